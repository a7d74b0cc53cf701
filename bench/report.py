"""``python -m bench.report runs/bench-engines.jsonl``: markdown table and bar chart of the
engine comparison (tokens/s per system and setting, ratios to CTranslate2 and generate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.protocol import save_log_chart


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ratio(speed: dict[tuple[str, str], float], a: str, b: str, setting: str) -> str:
    """``a / b`` for one setting, or n/a when either was not measured."""
    if (a, setting) not in speed or (b, setting) not in speed:
        return "n/a"
    return f"{speed[(a, setting)] / speed[(b, setting)]:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """One line per setting: tokens/s of each system and the headline ratios."""
    systems = list(dict.fromkeys(r["system"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    speed = {(r["system"], r["setting"]): r["tokens_per_s"] for r in rows}
    head = ["setting", *systems, "fp32 / ct2-float32", "fp32 / generate", "int8 / ct2-int8"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for setting in settings:
        values = [speed.get((s, setting), 0.0) for s in systems]
        pairs = [("engine-fp32", "ct2-float32"), ("engine-fp32", "generate"),
                 ("engine-int8", "ct2-int8")]
        cells = [setting, *(f"{v:.0f}" for v in values),
                 *(ratio(speed, a, b, setting) for a, b in pairs)]
        lines.append("| " + " | ".join(cells) + " |")
    peaks = {r["system"]: r["peak_rss_mb"] for r in rows}
    lines += ["", "Peak resident memory (MB): "
              + ", ".join(f"{k} {v}" for k, v in peaks.items())]
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], png: Path) -> None:
    """Grouped bars, tokens/s, one group per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    speed = {(r["system"], r["setting"]): r["tokens_per_s"] for r in rows}
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        ax.bar([j + i * width for j in range(len(settings))],
               [speed.get((system, s), 0) for s in settings], width, label=system)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(settings))], settings)
    ax.set_ylabel("generated tokens / s (2 threads)")
    save_log_chart(fig, ax, png)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    cli.add_argument("results", type=Path)
    cli.add_argument("--png", type=Path, default=Path("docs/bench-engines.png"))
    args = cli.parse_args(argv)
    rows = load(args.results)
    print(table(rows))
    chart(rows, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
