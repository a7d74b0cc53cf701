"""Iteration-level scheduling (continuous batching) for encoder-decoder decoding.

A :class:`DecodeLoop` keeps one running beam search per set of search options (greedy is beam
1, which gives the same tokens and scores as :func:`greedy_search`). Each :meth:`DecodeLoop.
iterate` call admits new requests — their sentences are encoded and **join** the running
batch: encoder outputs and masks right-padded to the batch's source length, growing caches
left-padded and masked (``OnnxModel.merge``) — then runs one decoder step per search. Inputs
that finish leave at once, and a request whose sentences are all done is returned in the same
call. Rows of a cancelled request are dropped before the next step.

Every input keeps its own step count, length limit and position, so its result is the one it
gets decoding alone (the padded entries weigh exactly zero in attention; float sums may differ
in the last bits, see ``tests/service/inference/test_continuous.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.inference.batching import pad_batch
from service.inference.beam import Beams, Hypotheses, beam_step, concat_beams, start_beams
from service.inference.onnx_decoder import OnnxModel
from service.inference.search import Hypothesis, SearchOptions
from service.inference.translator import LengthLimits, Prepared, Translation, Translator


class RunningSearch:
    """A beam search over a batch whose inputs change between steps.

    Inputs are identified by integer keys. State rows: ``K`` per input (``K`` = beam size),
    in the order of ``beams.origin``.
    """

    def __init__(self, model: OnnxModel, options: SearchOptions, *, start_id: int, eos_id: int,
                 pad_id: int) -> None:
        self.model = model
        self.options = options
        self.start_id, self.eos_id, self.pad_id = start_id, eos_id, pad_id
        self.beams: Beams | None = None
        self.state: Any = None
        self.finished: Hypotheses = {}

    def __len__(self) -> int:
        """Inputs still decoding."""
        return 0 if self.beams is None else len(self.beams.origin)

    def add(self, keys: list[int], sources: list[list[int]], max_length: np.ndarray) -> None:
        """Encode ``sources`` (token ids, eos included) and append them to the running batch;
        ``max_length`` ``(len(keys),)`` caps each input's generated tokens."""
        ids, mask = pad_batch(sources, self.pad_id)
        width = self.options.beam_size
        state = self.model.encode(ids, mask)
        state = self.model.reorder(state, np.repeat(np.arange(len(keys)), width))
        beams = start_beams(np.array(keys, dtype=np.int64), max_length, width, self.start_id)
        for key in keys:
            self.finished[key] = []
        if self.beams is None or not len(self.beams.origin):
            self.beams, self.state = beams, state
        else:
            self.beams = concat_beams(self.beams, beams)
            self.state = self.model.merge(self.state, state)

    def drop(self, keys: set[int]) -> None:
        """Remove the given inputs (a cancelled request) from the batch."""
        if self.beams is None:
            return
        keep = np.flatnonzero(~np.isin(self.beams.origin, list(keys)))
        if len(keep) == len(self.beams.origin):
            return
        for key in keys:
            self.finished.pop(key, None)
        self.state = (self.model.reorder(self.state, self.beams.rows_of(keep))
                      if len(keep) else None)
        self.beams = self.beams.select(keep) if len(keep) else None

    def step(self) -> Hypotheses:
        """One decoder call; the hypotheses of the inputs that finished in it, by key."""
        if self.beams is None or not len(self.beams.origin):
            return {}
        results: Hypotheses = {}
        self.beams, self.state = beam_step(self.model, self.state, self.beams, self.finished,
                                           results, eos_id=self.eos_id, options=self.options)
        if len(self.beams.origin):
            self.state = self.model.compact(self.state)
        else:
            self.beams, self.state = None, None
        return results


@dataclass
class LoopRequest:
    """A request inside the loop: its texts, options, sentences and their results so far."""

    texts: list[str]
    options: SearchOptions
    prepared: Prepared
    jobs: list[int]
    done: dict[int, list[Hypothesis]] = field(default_factory=dict)


Outcome = tuple[int, list[Translation] | Exception]  # request key and its result or error


@dataclass(frozen=True)
class Arrival:
    """A request to admit: its key, texts, search options and absolute length cap."""

    key: int
    texts: list[str]
    options: SearchOptions
    max_length: int | None = None


class DecodeLoop:
    """Requests in, finished requests out; not thread-safe (one worker thread drives it)."""

    def __init__(self, translator: Translator) -> None:
        if not translator.model.joinable:
            raise ValueError(f"{translator.manifest.name}: bundle cannot join running batches "
                             "(no cache mask); re-export it with `python -m training.export`")
        self.translator = translator
        self.searches: dict[SearchOptions, RunningSearch] = {}
        self.requests: dict[int, LoopRequest] = {}
        self.owner_of_job: dict[int, int] = {}
        self._next_job = 0

    @property
    def running(self) -> int:
        """Sentences still decoding, over all searches."""
        return sum(len(search) for search in self.searches.values())

    def admit(self, arrivals: list[Arrival]) -> list[Outcome]:
        """Tokenize the arrivals and join their sentences to the running search of their
        options (one encoder call per options group); requests with nothing to decode, or that
        cannot be tokenized, are answered at once (returned)."""
        translator = self.translator
        outcomes: list[Outcome] = []
        groups: dict[SearchOptions, list[tuple[list[int], list[list[int]], np.ndarray]]] = {}
        for arrival in arrivals:
            try:
                prepared = translator.prepare(arrival.texts)
            except ValueError as err:
                outcomes.append((arrival.key, err))
                continue
            jobs = list(range(self._next_job, self._next_job + len(prepared.sources)))
            self._next_job += len(jobs)
            if not jobs:
                outcomes.append((arrival.key, translator.assemble(arrival.texts, prepared, [])))
                continue
            self.requests[arrival.key] = LoopRequest(arrival.texts, arrival.options, prepared,
                                                     jobs)
            self.owner_of_job.update((job, arrival.key) for job in jobs)
            lengths = np.array([len(source) for source in prepared.sources])
            limit = LengthLimits(max_length=arrival.max_length).for_sources(
                lengths, translator.manifest.max_positions)
            groups.setdefault(arrival.options, []).append((jobs, prepared.sources, limit))
        for options, parts in groups.items():
            self._search_for(options).add([j for jobs, _, _ in parts for j in jobs],
                                          [s for _, sources, _ in parts for s in sources],
                                          np.concatenate([limit for _, _, limit in parts]))
        return outcomes

    def cancel(self, key: int) -> None:
        """Forget a request and free its rows."""
        request = self.requests.pop(key, None)
        if request is None:
            return
        for job in request.jobs:
            self.owner_of_job.pop(job, None)
        self._search_for(request.options).drop(set(request.jobs))

    def step(self) -> list[Outcome]:
        """One decoder step of every running search; the requests that completed."""
        outcomes: list[Outcome] = []
        for options, search in list(self.searches.items()):
            for job, hyps in search.step().items():
                outcome = self._job_done(job, hyps)
                if outcome is not None:
                    outcomes.append(outcome)
            if not len(search):
                del self.searches[options]
        return outcomes

    def _job_done(self, job: int, hyps: list[Hypothesis]) -> Outcome | None:
        key = self.owner_of_job.pop(job)
        request = self.requests[key]
        request.done[job] = hyps
        if len(request.done) < len(request.jobs):
            return None
        del self.requests[key]
        ordered = [request.done[j] for j in request.jobs]
        return key, self.translator.assemble(request.texts, request.prepared, ordered)

    def _search_for(self, options: SearchOptions) -> RunningSearch:
        search = self.searches.get(options)
        if search is None:
            special = self.translator.manifest.special_tokens
            search = RunningSearch(self.translator.model, options,
                                   start_id=special["decoder_start"], eos_id=special["eos"],
                                   pad_id=special["pad"])
            self.searches[options] = search
        return search
