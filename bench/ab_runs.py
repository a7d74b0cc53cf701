"""Running code of one checkout of this repository from another (``bench.commits_ab``): a
module run to its end (:func:`run_module`) or a loaded engine system timing passes on request
(:func:`worker`), each in its own process whose working directory and first ``PYTHONPATH``
entry are the checkout's root, so that it imports that version's code. Every answer carries
``foreign_cpu``: the share of the machine's cores other processes kept busy meanwhile.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec

P = ParamSpec("P")
Rows = list[dict[str, Any]]
WORKER = Path(__file__).with_name("ab_worker.py")


class Version(NamedTuple):
    """A checkout of the repository: ``label`` names it in the report."""

    label: str
    root: Path


def environment(version: Version) -> dict[str, str]:
    """This process's environment with ``version``'s root first on ``PYTHONPATH``."""
    return {**os.environ, "PYTHONPATH": str(version.root)}


def run_module(version: Version, argv: Sequence[str]) -> Rows:
    """``python -m ARGV...`` in ``version``'s tree; the JSON objects it prints."""
    machine, own, started = busy_seconds(), children_seconds(), time.monotonic()
    done = subprocess.run([sys.executable, "-m", *argv], cwd=version.root,
                          env=environment(version), capture_output=True, text=True)
    foreign = foreign_share(busy_seconds() - machine - (children_seconds() - own),
                            time.monotonic() - started)
    if done.returncode:
        raise SystemExit(f"{version.label}: python -m {shlex.join(argv)} failed:\n"
                         f"{done.stderr[-3000:]}")
    return [{**json.loads(line), "foreign_cpu": foreign} for line in done.stdout.splitlines()
            if line.startswith("{")]


@contextmanager
def worker(version: Version, system: str, work: Path, threads: int, quick: bool
           ) -> Iterator[Callable[[int, int], Rows]]:
    """``system`` of ``bench.engines`` loaded in ``version``'s tree (``bench/ab_worker.py``,
    over the bench model in ``work``): a function (beam, batch) -> one row with the
    ``tokens_per_s`` of one pass of setting 1."""
    process = subprocess.Popen(
        [sys.executable, "-P", str(WORKER), system, str(work), str(threads),
         *(["--quick"] if quick else [])], cwd=version.root, env=environment(version),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None

    def answer() -> dict[str, Any]:
        line = stdout.readline()
        if not line:
            raise SystemExit(f"{version.label}: the {system} worker stopped "
                             f"(exit code {process.wait()})")
        return json.loads(line)

    def timed(beam: int, batch: int) -> Rows:
        machine, own, started = busy_seconds(), process_seconds(process.pid), time.monotonic()
        stdin.write(json.dumps([beam, batch]) + "\n")
        stdin.flush()
        row = answer()
        foreign = busy_seconds() - machine - (process_seconds(process.pid) - own)
        return [{**row, "foreign_cpu": foreign_share(foreign, time.monotonic() - started)}]

    try:
        answer()  # ready
        yield timed
    finally:
        stdin.close()
        process.wait(timeout=60)


def patient(measure: Callable[P, Rows], max_foreign: float, retries: int, name: str
            ) -> Callable[P, Rows]:
    """``measure``, repeated (up to ``retries`` more times) while other processes kept more
    than ``max_foreign`` of the cores busy during it; the last answer counts either way, with
    the number of ``attempts``. ``name`` says what is repeated (on stderr)."""
    def again(*args: P.args, **kwargs: P.kwargs) -> Rows:
        for attempt in range(1, retries + 2):
            rows = measure(*args, **kwargs)
            foreign = max((r.get("foreign_cpu", 0.0) for r in rows), default=0.0)
            if foreign <= max_foreign:
                break
            print(f"{name} {args}: other work took {foreign:.0%} of the cores (attempt "
                  f"{attempt})", file=sys.stderr, flush=True)
        return [{**row, "attempts": attempt} for row in rows]
    return again


def foreign_share(seconds: float, wall: float) -> float:
    """CPU ``seconds`` of other processes over ``wall`` seconds, as a share of the cores."""
    return round(max(seconds, 0.0) / (max(wall, 1e-9) * (os.cpu_count() or 1)), 3)


def busy_seconds() -> float:
    """CPU seconds every core of this machine has spent busy since boot (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_seconds() -> float:
    """CPU seconds of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_seconds(pid: int) -> float:
    """CPU seconds process ``pid`` (all its threads) has used (``/proc/PID/stat``)."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")
