"""``python -m inference translate --bundle DIR [--beam N] < in.txt > out.txt``.

One input per line; one translation per line, in order; a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from tqdm import tqdm

from inference.bundle import BundleError
from inference.translator import Translator

CHUNK = 256  # lines per engine call: big enough to batch well, small enough to stream


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    cli = argparse.ArgumentParser(prog="python -m inference", description=__doc__)
    commands = cli.add_subparsers(dest="command", required=True)
    run = commands.add_parser("translate", help="translate stdin to stdout, line by line")
    run.add_argument("--bundle", required=True, help="bundle directory (models/<name>)")
    run.add_argument("--beam", type=int, default=4, help="beam size (1 = greedy)")
    run.add_argument("--batch-tokens", type=int, default=4096, help="token budget per batch")
    run.add_argument("--length-penalty", type=float, default=1.0)
    run.add_argument("--max-length", type=int, help="absolute cap on generated tokens")
    run.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    run.add_argument("--provider", action="append", help="e.g. CPUExecutionProvider")
    return cli


def chunks(lines: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(lines), CHUNK):
        yield lines[start : start + CHUNK]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        translator = Translator.load(args.bundle, providers=args.provider, threads=args.threads,
                                     max_batch_tokens=args.batch_tokens)
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lines = sys.stdin.read().splitlines()
    with tqdm(total=len(lines), unit="line", file=sys.stderr) as bar:
        for chunk in chunks(lines):
            texts = [line for line in chunk if line.strip()]
            try:
                results = iter(translator.translate(
                    texts, beam_size=args.beam, length_penalty=args.length_penalty,
                    max_length=args.max_length))
            except ValueError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            for line in chunk:
                sys.stdout.write((next(results).text if line.strip() else "") + "\n")
            sys.stdout.flush()
            bar.update(len(chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
