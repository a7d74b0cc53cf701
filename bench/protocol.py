"""What the batching benchmarks share (issue 8's protocol): Poisson arrivals, percentiles,
the two modes taking turns, the summary of the target ratios, the latency chart and writing
them out. Used by
``bench.continuous`` (over HTTP), ``bench.in_process`` (the service's batchers without HTTP)
and ``bench.queueing`` (a model); imports nothing beyond the standard library (matplotlib
only when drawing)."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MODES = ("request", "continuous")


def poisson(items: Sequence[T], rate: float, seconds: float, seed: int = 0
            ) -> list[tuple[float, T]]:
    """Poisson arrivals at ``rate`` per second within ``seconds``: (seconds from the start,
    a random one of ``items``), in time order."""
    rng = random.Random(seed)
    arrivals = []
    clock = rng.expovariate(rate)
    while clock < seconds:
        arrivals.append((clock, rng.choice(items)))
        clock += rng.expovariate(rate)
    return arrivals


def percentile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile of ``values`` (the value itself when one, 0 when none)."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1]


def quantile(values: list[float], q: int) -> float:
    """The ``q``-th percentile of latencies in seconds, in ms (0 when empty)."""
    return 1000 * percentile(values, q)


def taking_turns(index: int) -> tuple[str, ...]:
    """The modes in the order of turn ``index`` (flipped every turn)."""
    return MODES if index % 2 == 0 else MODES[::-1]


def latencies(rows: list[dict[str, Any]], mode: str, load: float, key: str = "p50_ms"
              ) -> list[float]:
    """``key`` of every open-loop round of ``mode`` at ``load``, in round order."""
    return [r[key] for r in rows if r.get("mode") == mode and r["kind"] == "open_loop"
            and r["load"] == load]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The two target ratios, continuous over request-level: p50 at 70 % load (the ratio of
    the medians over rounds, and each round's) and saturated throughput."""
    out: dict[str, Any] = {"kind": "summary"}
    loads = sorted({r["load"] for r in rows if r["kind"] == "open_loop"})
    middle = 0.7 if 0.7 in loads else loads[len(loads) // 2]
    request, continuous = (latencies(rows, mode, middle) for mode in MODES)
    label = f"at_{int(100 * middle)}pct"
    out[f"p50_ratio_{label}"] = round(
        statistics.median(continuous) / max(statistics.median(request), 1e-9), 2)
    out[f"p50_round_ratios_{label}"] = [round(c / max(r, 1e-9), 2)
                                        for r, c in zip(request, continuous, strict=True)]

    def saturated(mode: str) -> list[float]:
        return [r["sentences_per_s"] for r in rows if r["mode"] == mode
                and r["kind"] == "saturated"]

    out["saturated_throughput_ratio"] = round(
        statistics.median(saturated("continuous"))
        / max(statistics.median(saturated("request")), 1e-9), 2)
    out["saturated_round_ratios"] = [
        round(c / max(r, 1e-9), 2)
        for r, c in zip(saturated("request"), saturated("continuous"), strict=True)]
    return out


def chart(rows: list[dict[str, Any]], png: Path) -> None:
    """p50 and p99 latency against offered load, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for mode in MODES:
        loads = sorted({r["load"] for r in rows if r.get("mode") == mode
                        and r["kind"] == "open_loop"})
        x = [100 * load for load in loads]
        for quantile_key, style in (("p50_ms", "-"), ("p99_ms", "--")):
            medians = [statistics.median(latencies(rows, mode, load, quantile_key))
                       for load in loads]
            ax.plot(x, medians, marker="o" if style == "-" else "x", linestyle=style,
                    label=f"{mode} {quantile_key[:3]}")
    ax.set_xlabel("offered load, % of request-level capacity")
    ax.set_ylabel("latency (ms)")
    save_log_chart(fig, ax, png)


def save_log_chart(fig: Any, ax: Any, png: Path) -> None:
    """Log y axis, a legend, then write ``png`` and free the figure (the benches' charts)."""
    import matplotlib.pyplot as plt

    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def finish(rows: list[dict[str, Any]], out: Path | None, png: Path | None) -> None:
    """Append the summary (:func:`summarise`) to ``rows`` and print it; write every row to
    ``out`` (JSONL) and the chart to ``png`` when given."""
    summary = summarise(rows)
    rows.append(summary)
    print(json.dumps(summary))
    if out:
        out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    if png:
        chart(rows, png)
