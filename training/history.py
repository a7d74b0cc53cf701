"""A shipped model's learning curve across every run that trained it.

Each packaged model keeps ``history.jsonl``: one point per dev evaluation, with the optimizer
steps and target tokens counted from the model's first run. A run started with
``init_from=models/NAME/weights`` continues the curve of ``models/NAME/history.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

HISTORY = "history.jsonl"


@dataclass(frozen=True)
class Point:
    """One dev evaluation; ``step`` and ``target_tokens`` count from the model's first run."""

    run: int
    step: int
    target_tokens: int
    dev_bleu: float


def read_history(path: Path) -> list[Point]:
    """The points of ``path``, or none where it does not exist."""
    if not path.is_file():
        return []
    return [Point(**json.loads(line)) for line in path.read_text().splitlines() if line]


def write_history(path: Path, points: list[Point]) -> None:
    path.write_text("".join(json.dumps(asdict(p)) + "\n" for p in points))


def continue_history(previous: list[Point], metrics: Path) -> list[Point]:
    """``previous`` followed by the dev evaluations logged in a run's ``metrics.jsonl``,
    offset by where ``previous`` ends."""
    last = previous[-1] if previous else Point(0, 0, 0, 0.0)
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    dev = [r for r in rows if r["kind"] == "dev"]
    missing = [r["step"] for r in dev if "target_tokens" not in r]
    if missing:
        raise ValueError(f"{metrics}: dev rows without target_tokens (steps {missing[:3]})")
    return previous + [Point(last.run + 1, last.step + r["step"],
                             last.target_tokens + r["target_tokens"], r["bleu"]) for r in dev]


def run_summary(points: list[Point]) -> list[str]:
    """Markdown table rows: per run, its last step, tokens seen and best dev BLEU."""
    lines = ["| run | steps (total) | target tokens seen (total) | best dev BLEU (greedy) |",
             "|---|---|---|---|"]
    for run in sorted({p.run for p in points}):
        mine = [p for p in points if p.run == run]
        lines.append(f"| {run} | {mine[-1].step:,} | {mine[-1].target_tokens / 1e6:.2f} M | "
                     f"{max(p.dev_bleu for p in mine)} |")
    return lines


def plot_history(points: list[Point], png: Path) -> None:
    """Dev BLEU against target tokens seen (millions), one marker style per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot([p.target_tokens / 1e6 for p in points], [p.dev_bleu for p in points],
              color="0.7", zorder=1)
    for run in sorted({p.run for p in points}):
        mine = [p for p in points if p.run == run]
        axes.scatter([p.target_tokens / 1e6 for p in mine], [p.dev_bleu for p in mine],
                     label=f"run {run}", s=14, zorder=2)
    axes.set(xlabel="target tokens seen (millions)", ylabel="dev BLEU (greedy, 200 verses)")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
