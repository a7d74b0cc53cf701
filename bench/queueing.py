"""``python -m bench.queueing``: what scheduling alone can win, in a queueing model of the two
batching modes calibrated on this machine (issue 8).

The model: a worker runs iterations; each decoder step advances every running sentence by
one token and costs ``call_ms + sentence_ms * running`` (beam rows included in
``sentence_ms``); an iteration that admits sentences adds ``encode_call_ms + encode_token_ms
* admitted source tokens``. A sentence is done after its number of decoder steps.
Request-level batching admits only when nothing runs (everything waiting, up to the token
budget, is one batch); continuous batching admits at every iteration while the running
sentences stay under the budget, and (as the service does by default) encodes them during the
step, which then lasts as long as the longer of the two (an optimistic overlap), after which
they join; ``--no-overlap`` admits them before the step instead. Nothing else is modelled
(no host bookkeeping, no HTTP, no gathering wait), so the continuous figures are what an ideal
implementation of the same scheduling would reach.

Calibration (unless costs are given): the output lengths of ``--sentences`` test verses at
``--beam`` (``Translator.translate``), and decoder steps of a ``DecodeLoop`` holding 1-48 copies
of one long verse, fitted to a line. Then, as ``bench.continuous`` measures over HTTP: the
saturated throughput of each mode with ``--clients`` closed-loop clients, and Poisson arrivals
at ``--loads`` of the request-level capacity: p50/p99 latency per mode and their ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.data import sample_verses
from bench.protocol import percentile, poisson
from inference import Translator
from inference.continuous import Arrival, DecodeLoop
from inference.options import DecodeOptions

MODES = ("request", "continuous")
FIT_SIZES = (1, 2, 4, 8, 16, 32, 48)


@dataclass(frozen=True)
class Costs:
    """Milliseconds of one worker iteration: ``call_ms + sentence_ms * running`` for the
    decoder step, plus ``encode_call_ms + encode_token_ms * admitted source tokens`` when it
    admits."""

    call_ms: float
    sentence_ms: float
    encode_call_ms: float = 0.0
    encode_token_ms: float = 0.0


@dataclass(frozen=True)
class Setup:
    """The modelled server: its costs, the token budget of the running (or batched)
    sentences (``beam * source tokens``, as ``TRANSLATE_MAX_BATCH_TOKENS`` counts) and the
    beam size; whether continuous batching encodes arrivals during a step
    (``IterationLevel(overlap_encoder=...)``)."""

    costs: Costs
    budget: int = 4096
    beam: int = 4
    overlap: bool = True  # continuous: arrivals encoded during a step, as the service does


@dataclass(frozen=True)
class Job:
    """One request of one sentence: decoder steps until it is done, and source tokens."""

    steps: int
    source_tokens: int


@dataclass(slots=True)
class Running:
    """A sentence admitted to the worker: its arrival (ms), steps left and source tokens."""

    arrival: float
    steps_left: int
    source_tokens: int


class Worker:
    """The simulated worker of one batching mode: a queue, the running sentences, a clock."""

    def __init__(self, mode: str, setup: Setup) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode, self.setup = mode, setup
        self.clock = 0.0
        self.waiting: deque[tuple[float, Job]] = deque()
        self.running: list[Running] = []

    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def iterate(self) -> list[float]:
        """One iteration (admissions, then one decoder step); the arrival times of the
        sentences it finished. With ``Setup.overlap`` (continuous mode, something running)
        the admitted sentences are encoded during the step, which then lasts as long as the
        longer of the two, and join after it."""
        joining = self._admissions()
        encode = self._encode_ms(joining)
        overlapped = self.setup.overlap and self.mode == "continuous" and bool(self.running)
        if not overlapped:
            self.running += joining
        costs = self.setup.costs
        step = costs.call_ms + costs.sentence_ms * len(self.running)
        self.clock += max(step, encode) if overlapped else step + encode
        for sentence in self.running:
            sentence.steps_left -= 1
        done = [s.arrival for s in self.running if s.steps_left <= 0]
        self.running = [s for s in self.running if s.steps_left > 0]
        if overlapped:
            self.running += joining
        return done

    def _encode_ms(self, joining: list[Running]) -> float:
        if not joining:
            return 0.0
        costs = self.setup.costs
        return costs.encode_call_ms + costs.encode_token_ms * sum(
            s.source_tokens for s in joining)

    def _admissions(self) -> list[Running]:
        """The waiting sentences admitted now, in arrival order, within the budget."""
        if self.mode == "request" and self.running:
            return []
        beam, budget = self.setup.beam, self.setup.budget
        used = beam * sum(s.source_tokens for s in self.running)
        joining: list[Running] = []
        while self.waiting and (used + beam * self.waiting[0][1].source_tokens <= budget
                                or not (self.running or joining)):
            arrival, job = self.waiting.popleft()
            joining.append(Running(arrival, job.steps, job.source_tokens))
            used += beam * job.source_tokens
        return joining


def serve(mode: str, setup: Setup, timed: list[tuple[float, Job]]) -> list[float]:
    """Latencies (ms, from arrival) of the ``timed`` arrivals (ms, job; in time order)."""
    arrivals = deque(timed)
    worker, latencies = Worker(mode, setup), []
    while arrivals or worker.busy():
        if not worker.busy():
            worker.clock = max(worker.clock, arrivals[0][0])
        while arrivals and arrivals[0][0] <= worker.clock:
            worker.waiting.append(arrivals.popleft())
        latencies += [worker.clock - arrived for arrived in worker.iterate()]
    return latencies


def closed_loop(mode: str, setup: Setup, jobs: list[Job], clients: int, seconds: float, *,
                seed: int = 0) -> float:
    """Sentences per second with ``clients`` clients that each send the next request as soon
    as the last is answered (counted over the second half of ``seconds``)."""
    rng = random.Random(seed)
    worker = Worker(mode, setup)
    worker.waiting.extend((0.0, rng.choice(jobs)) for _ in range(clients))
    done, start = 0, 500 * seconds
    while worker.clock < 1000 * seconds:
        finished = worker.iterate()
        if worker.clock >= start:
            done += len(finished)
        worker.waiting.extend((worker.clock, rng.choice(jobs)) for _ in finished)
    return 1000 * done / (worker.clock - start)


def compare(setup: Setup, jobs: list[Job], *, clients: int, loads: list[float],
            seconds: float) -> Iterator[dict[str, object]]:
    """Capacity rows, then one row per load and mode, then the summary."""
    capacity = {mode: closed_loop(mode, setup, jobs, clients, seconds) for mode in MODES}
    for mode in MODES:
        yield {"kind": "saturated", "mode": mode, "sentences_per_s": round(capacity[mode], 2)}
    p50: dict[tuple[float, str], float] = {}
    for load in loads:
        for mode in MODES:
            arrivals = poisson(jobs, load * capacity["request"], seconds, seed=int(100 * load))
            latencies = serve(mode, setup, [(1000 * at, job) for at, job in arrivals])
            p50[load, mode] = percentile(latencies, 50)
            yield {"kind": "open_loop", "mode": mode, "load": load,
                   "p50_ms": round(p50[load, mode], 1),
                   "p99_ms": round(percentile(latencies, 99), 1)}
    yield {"kind": "summary", **asdict(setup),
           "saturated_continuous_over_request": round(
               capacity["continuous"] / capacity["request"], 3),
           **{f"p50_continuous_over_request_at_{round(100 * load)}": round(
               p50[load, "continuous"] / p50[load, "request"], 3) for load in loads}}


# --- calibration on the real engine ---------------------------------------------------------

def measure_jobs(translator: Translator, texts: list[str], beam: int) -> list[Job]:
    """Each text's decoder steps (tokens generated, plus the end of sentence) and source
    tokens."""
    results = translator.translate(texts, beam_size=beam)
    return [Job(r.target_tokens + 1, r.source_tokens) for r in results]


def measure_costs(translator: Translator, text: str, source_tokens: int, beam: int,
                  steps: int = 12, repeats: int = 3) -> Costs:
    """Fit ``Costs`` to decoder steps of a loop holding ``FIT_SIZES`` copies of ``text``
    (``source_tokens`` long; it must decode for more than ``steps`` steps) and to the encoder
    of 1 and 16 copies. Each step is timed alone and each size's step cost is the median of
    its ``steps``; an encoder cost is the fastest of ``repeats`` calls: one preemption on a
    shared machine moves neither."""
    options = DecodeOptions(beam_size=beam)
    step_ms, encode_ms = [], {}
    for size in FIT_SIZES:
        encodes = []
        for _ in range(repeats):
            loop = DecodeLoop(translator)
            started = time.perf_counter()
            loop.admit([Arrival(key, [text], options) for key in range(size)])
            encodes.append(1000 * (time.perf_counter() - started))
        encode_ms[size] = min(encodes)
        loop.step()  # the first step allocates the caches
        step_ms.append(statistics.median(timed_steps(loop, steps)))
    sentence_ms, call_ms = np.polyfit(FIT_SIZES, step_ms, 1)
    encode_sentence = (encode_ms[16] - encode_ms[1]) / 15
    return Costs(round(float(call_ms), 3), round(float(sentence_ms), 4),
                 round(encode_ms[1] - encode_sentence, 3),
                 round(encode_sentence / source_tokens, 5))


def timed_steps(loop: DecodeLoop, steps: int) -> list[float]:
    """Milliseconds of each of the next ``steps`` decoder steps of ``loop``."""
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        finished = loop.step()
        times.append(1000 * (time.perf_counter() - started))
        assert not finished, "the calibration verse must decode for longer"
    return times


def calibrate(args: argparse.Namespace, texts: list[str]) -> tuple[Costs, list[Job]]:
    """The jobs of ``texts``, and ``args.costs`` or the costs measured on the text that
    decodes longest."""
    translator = Translator.load(args.bundle, threads=args.threads)
    jobs = measure_jobs(translator, texts, args.beam)
    if args.costs is not None:
        return args.costs, jobs
    longest = max(range(len(jobs)), key=lambda i: jobs[i].steps)
    if jobs[longest].steps < 4:
        raise SystemExit("error: no verse decodes for 4 steps; pass more --sentences")
    measure = (translator, texts[longest], jobs[longest].source_tokens, args.beam,
               min(12, jobs[longest].steps - 2))
    measure_costs(*measure)  # warm-up
    return measure_costs(*measure), jobs


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m bench.queueing", description=__doc__)
    cli.add_argument("--bundle", type=Path, default=Path("models/transformer-en-fr"))
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--sentences", type=int, default=400, help="verses whose lengths are used")
    cli.add_argument("--beam", type=int, default=4)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--budget", type=int, default=4096,
                     help="TRANSLATE_MAX_BATCH_TOKENS (beam * source tokens)")
    cli.add_argument("--no-overlap", action="store_true",
                     help="continuous: encode arrivals before the step, not during it")
    cli.add_argument("--clients", type=int, default=64, help="closed-loop clients")
    cli.add_argument("--loads", type=lambda s: [float(x) for x in s.split(",")],
                     default=[0.5, 0.7, 0.9])
    cli.add_argument("--seconds", type=float, default=120, help="simulated, per measurement")
    cli.add_argument("--costs", type=lambda s: Costs(*(float(x) for x in s.split(","))),
                     help="CALL_MS,SENTENCE_MS[,ENCODE_CALL_MS,ENCODE_TOKEN_MS] instead of "
                     "measuring (e.g. another device's step costs)")
    cli.add_argument("--out", type=Path, help="append the rows here (JSONL)")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    texts = sample_verses(args.data, args.sentences)
    if texts is None:
        return 2
    costs, jobs = calibrate(args, texts)
    setup = Setup(costs, args.budget, args.beam, overlap=not args.no_overlap)
    rows = list(compare(setup, jobs, clients=args.clients,
                        loads=args.loads, seconds=args.seconds))
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.out:
        with args.out.open("a") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
