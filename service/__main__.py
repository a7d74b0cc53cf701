"""``python -m service [--host H] [--port P] [--models DIR]``: run the translation API.

Every other setting comes from ``TRANSLATE_*`` environment variables (``docs/service.md``).
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from service.api.app import create_app
from service.api.logs import configure_logging
from service.api.server import serve
from service.api.settings import Settings


def parser() -> argparse.ArgumentParser:
    """Command-line interface; flags override the environment."""
    cli = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    cli.add_argument("--host", help="bind address (TRANSLATE_HOST, default 127.0.0.1)")
    cli.add_argument("--port", type=int, help="port (TRANSLATE_PORT, default 8000)")
    cli.add_argument("--models", help="bundle directory (TRANSLATE_MODELS_DIR, default models)")
    cli.add_argument("--log-level", help="debug, info, warning... (TRANSLATE_LOG_LEVEL)")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2: bad settings, 1: models failed to load)."""
    args = parser().parse_args(argv)
    given = {"host": args.host, "port": args.port, "models_dir": args.models,
             "log_level": args.log_level}
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as err:
        for problem in err.errors(include_input=False):  # inputs may hold API keys
            where = ".".join(str(part) for part in problem["loc"])
            message = str(problem.get("ctx", {}).get("error", problem["msg"]))
            print(f"error: setting {where}: {message}" if where else f"error: {message}",
                  file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    return serve(create_app(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
