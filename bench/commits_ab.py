"""``python -m bench.commits_ab BASE HEAD``: two versions of this repository side by side,
each in its own processes importing its own code (``bench.ab_runs``). BASE and HEAD are
worktree paths or git refs (a ref is checked out as a detached worktree under ``--work``).

Engine: ``bench.engines`` setting 1 (a random Marian of OPUS-MT shape exported by each
version's own exporter; greedy/beam 4 x batch 64/1, forced to 32 tokens). For each of
``--systems`` (and its ``--reference``, CTranslate2, run from HEAD's tree), both versions and
the reference are loaded in one worker process each; per setting they time one pass each in
turn for ``--rounds`` rounds, the order reversed every round (base, head, reference; then
reference, head, base), so that passes compared are seconds apart and machine drift hits every
contender alike. Per system and setting: median tokens/s of each, head/base and
head/reference of the medians, and head/base within each round.

Service: ``bench.in_process`` (the request-level and continuous batchers over each version's
shipped Transformer) ``--service-runs`` times per version, base and head alternating (base,
head, head, base, ...): saturated sentences/s and p50 at 70 % load per mode and run; the spread
of one version's runs is the noise a difference between the versions is read against.

Every pass and run records the share of the cores other processes kept busy meanwhile
(``foreign_cpu``); one above ``--max-foreign`` is run again (at most ``--retries`` times),
since on a shared machine such a run measures the other work rather than the code.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from bench.ab_runs import Rows, Version, patient, run_module, worker
from bench.bundle_ab import parse_settings
from bench.protocol import MODES

T = TypeVar("T")
Runner = Callable[[Version, Sequence[str]], Rows]  # (version, python -m argv) -> rows
Timed = Callable[[int, int], Rows]  # (beam, batch) -> one row with tokens_per_s
Starter = Callable[["Contender", str], AbstractContextManager[Timed]]  # loads a system


class Contender(NamedTuple):
    """One side of the comparison: ``systems`` of ``bench.engines`` in ``version``'s tree,
    over the bench model cached in ``work``; ``role`` is base, head or reference."""

    role: str
    version: Version
    systems: tuple[str, ...]
    work: Path


def checkout(spec: str, trees: Path) -> Version:
    """A worktree path as it is, or a git ref checked out (detached) under ``trees``."""
    if Path(spec).is_dir():
        root = Path(spec).resolve()
        return Version(_git(root, "rev-parse", "--short", "HEAD"), root)
    commit = _git(Path.cwd(), "rev-parse", "--short", f"{spec}^{{commit}}")
    root = (trees / commit).resolve()
    if not root.exists():
        _git(Path.cwd(), "worktree", "add", "--detach", str(root), commit)
    return Version(commit, root)


def _git(where: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def prepare_engines(versions: Sequence[Version], work: Path, quick: bool, run: Runner) -> None:
    """Each version's bench bundles in ``work/<label>``, exported by its own exporter from one
    random model (built by the first version, copied with its CTranslate2 conversion)."""
    first = work / versions[0].label
    for version in versions:
        here = work / version.label
        for shared in ("marian", "ct2"):
            if here != first and (first / shared).exists() and not (here / shared).exists():
                shutil.copytree(first / shared, here / shared)
        run(version, ["bench.engines", "--rounds", "0", "--work", str(here),
                      *(["--quick"] if quick else [])])


def schedule(rounds: int, contenders: Sequence[T]) -> list[tuple[int, T]]:
    """(round, contender) in running order: the contenders' order reverses every round."""
    return [(index, contender) for index in range(rounds)
            for contender in (contenders if index % 2 == 0 else contenders[::-1])]


def engine_rounds(contenders: Sequence[Contender], settings: Sequence[tuple[int, int]],
                  rounds: int, start: Starter) -> Rows:
    """Every pass: for each column of the contenders' systems, all of them loaded at once,
    then per (beam, batch) of ``settings`` ``rounds`` rounds of one pass each
    (:func:`schedule`)."""
    rows = []
    for column in range(len(contenders[0].systems)):
        with ExitStack() as stack:
            loaded = [(c, c.systems[column], stack.enter_context(start(c, c.systems[column])))
                      for c in contenders]
            for beam, batch in settings:
                name = f"{'greedy' if beam == 1 else f'beam{beam}'} b{batch}"  # bench.engines'
                for index, (contender, system, timed) in schedule(rounds, loaded):
                    for row in timed(beam, batch):
                        rows.append({"role": contender.role, "system": system,
                                     "setting": name, "round": index, **row})
                        print(json.dumps(rows[-1]), flush=True)
    return rows


def engine_summary(rows: Sequence[dict[str, Any]], references: dict[str, str]
                   ) -> list[dict[str, Any]]:
    """One row per head system and setting: base, head and reference (``references[system]``)
    median tokens/s over rounds, each round's figures, head/base and head/reference (ratios of
    the medians), head/base within each round and their median, and the most of the machine
    other processes took during any of these passes."""
    speeds: dict[tuple[str, str, str], list[float]] = {}
    for row in sorted(rows, key=lambda r: r["round"]):
        speeds.setdefault((row["role"], row["system"], row["setting"]), []).append(
            row["tokens_per_s"])
    out = []
    for (role, system, setting), head in speeds.items():
        if role != "head":
            continue
        base = speeds[("base", system, setting)]
        paired = [h / b for h, b in zip(head, base, strict=True)]
        summary: dict[str, Any] = {
            "kind": "engine", "system": system, "setting": setting,
            "base_tokens_per_s": round(statistics.median(base), 1),
            "head_tokens_per_s": round(statistics.median(head), 1),
            "head_over_base": round(statistics.median(head) / statistics.median(base), 3),
            "round_ratios": [round(r, 3) for r in paired],
            "round_ratio_median": round(statistics.median(paired), 3),
            "base_all": base, "head_all": head}
        reference = speeds.get(("reference", references.get(system, ""), setting))
        if reference:
            summary |= {"reference": references[system],
                        "reference_tokens_per_s": round(statistics.median(reference), 1),
                        "head_over_reference": round(statistics.median(head)
                                                     / statistics.median(reference), 3)}
        summary["foreign_cpu_max"] = max(
            r.get("foreign_cpu", 0.0) for r in rows if r["setting"] == setting
            and r["system"] in (system, summary.get("reference")))
        out.append(summary)
    return out


def service_plan(runs: int, base: Version, head: Version) -> list[tuple[str, Version]]:
    """(role, version) in running order: base, head, then head, base, ... ``runs`` each."""
    pairs = [(("base", base), ("head", head)), (("head", head), ("base", base))]
    return [turn for index in range(runs) for turn in pairs[index % 2]]


def service_runs(plan: Sequence[tuple[str, Version]], run: Runner, argv: Sequence[str]
                 ) -> Rows:
    """The per-run figures (:func:`service_figures`) of ``bench.in_process ARGV`` for each
    turn of ``plan``."""
    out = []
    for index, (role, version) in enumerate(plan):
        rows = run(version, ["bench.in_process", *argv])
        out.append({"kind": "service_run", "role": role, "label": version.label,
                    "run": index, **service_figures(rows),
                    "foreign_cpu": max(r.get("foreign_cpu", 0.0) for r in rows)})
        print(json.dumps(out[-1]), flush=True)
    return out


def service_figures(rows: Sequence[dict[str, Any]], load: float = 0.7) -> dict[str, float]:
    """Per mode, one run's median saturated sentences/s over its rounds and median p50 (ms)
    at ``load`` of the request-level capacity."""
    figures = {}
    for mode in MODES:
        saturated = [r["sentences_per_s"] for r in rows
                     if r.get("mode") == mode and r.get("kind") == "saturated"]
        p50 = [r["p50_ms"] for r in rows if r.get("mode") == mode
               and r.get("kind") == "open_loop" and r["load"] == load]
        figures[f"{mode}_saturated"] = round(statistics.median(saturated), 2)
        figures[f"{mode}_p50_ms"] = round(statistics.median(p50), 1)
    return figures


def service_summary(runs: Sequence[dict[str, Any]]) -> Rows:
    """Per figure: each version's runs, their median and spread ((max - min) / median), and
    head/base of the medians."""
    out = []
    for figure in (f"{mode}_{what}" for what in ("p50_ms", "saturated") for mode in MODES):
        values = {role: [r[figure] for r in runs if r["role"] == role]
                  for role in ("base", "head")}
        medians = {role: statistics.median(v) for role, v in values.items()}
        out.append({"kind": "service", "figure": figure,
                    **{f"{role}_all": v for role, v in values.items()},
                    **{f"{role}_median": round(m, 2) for role, m in medians.items()},
                    **{f"{role}_spread": round((max(values[role]) - min(values[role])) / m, 3)
                       for role, m in medians.items()},
                    "head_over_base": round(medians["head"] / medians["base"], 3),
                    "foreign_cpu_max": max(r["foreign_cpu"] for r in runs)})
    return out


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m bench.commits_ab", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("base", help="worktree path or git ref: the baseline")
    cli.add_argument("head", help="worktree path or git ref: the version compared with it")
    cli.add_argument("--work", type=Path, default=Path("runs/commits-ab"),
                     help="bench models per version; refs are checked out under WORK/trees")
    cli.add_argument("--rounds", type=int, default=10, help="passes per engine setting and "
                     "contender (0: prepare only)")
    cli.add_argument("--settings", default="1x64,1x1,4x64,4x1",
                     help="BEAMxBATCH, comma-separated (default: setting 1's four)")
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--systems", default="engine-fp32,engine-int8")
    cli.add_argument("--reference", default="ct2-float32,ct2-int8",
                     help="one per --systems entry, run from HEAD's tree ('' for none)")
    cli.add_argument("--service-runs", type=int, default=2, help="bench.in_process per version")
    cli.add_argument("--service-args", default="--seconds 10 --rounds 2 --loads 0.7 "
                     "--load-rounds 2 --warmup 3", help="passed to bench.in_process")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"),
                     help="the service runs' sentences")
    cli.add_argument("--max-foreign", type=float, default=0.15,
                     help="a pass or run during which other processes kept more than this "
                     "share of the cores busy is run again (this machine is shared)")
    cli.add_argument("--retries", type=int, default=2, help="at most, per pass or run")
    cli.add_argument("--quick", action="store_true", help="tiny engine model: checks the harness")
    cli.add_argument("--out", type=Path)
    return cli


def main(argv: list[str] | None = None, run: Runner = run_module,
         start: Starter | None = None) -> int:
    """Entry point; ``run`` and ``start`` (a :class:`Contender`'s system loaded, default
    :func:`bench.ab_runs.worker`) stand in for the processes in tests."""
    args = parser().parse_args(argv)
    work = args.work.resolve()
    base, head = (checkout(spec, work / "trees") for spec in (args.base, args.head))
    if base.label == head.label:
        raise SystemExit(f"base and head are the same commit ({base.label})")
    systems = tuple(args.systems.split(","))
    references = dict(zip(systems, args.reference.split(","), strict=True)
                      if args.reference else ())
    prepare_engines([head, base], work, args.quick, run)
    contenders = [Contender("base", base, systems, work / base.label),
                  Contender("head", head, systems, work / head.label)]
    if references:
        contenders.append(Contender("reference", head, tuple(references.values()),
                                    work / head.label))
    rows = engine_rounds(contenders, parse_settings(args.settings), args.rounds, patiently(
        start or loader(args.threads, args.quick), args.max_foreign, args.retries)
    ) if args.rounds else []
    summary = engine_summary(rows, references) if rows else []
    service_argv = [*shlex.split(args.service_args), "--threads", str(args.threads),
                    "--data", str(args.data.resolve())]
    runs = service_runs(service_plan(args.service_runs, base, head),
                        patient(run, args.max_foreign, args.retries, "bench.in_process"),
                        service_argv)
    summary += service_summary(runs) if runs else []
    for row in summary:
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in [*rows, *runs, *summary]))
    return 0


def loader(threads: int, quick: bool) -> Starter:
    """Loads a contender's system in a worker process in its version's tree."""
    return lambda contender, system: worker(contender.version, system, contender.work, threads,
                                            quick)


def patiently(start: Starter, max_foreign: float, retries: int) -> Starter:
    """``start`` whose passes are run again when disturbed (:func:`bench.ab_runs.patient`)."""
    @contextmanager
    def started(contender: Contender, system: str) -> Iterator[Timed]:
        with start(contender, system) as timed:
            yield patient(timed, max_foreign, retries, f"{contender.version.label} {system}")
    return started


if __name__ == "__main__":
    sys.exit(main())
