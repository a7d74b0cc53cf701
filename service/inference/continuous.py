"""Iteration-level scheduling (continuous batching) for encoder-decoder decoding.

A :class:`DecodeLoop` keeps one running beam search per set of search options (greedy is beam
1, which gives the same tokens and scores as :func:`greedy_search`). Its driver calls, between
two steps, :meth:`DecodeLoop.admit` — new requests' sentences are encoded and **join** the
running batch: encoder outputs and masks padded to the batch's source width
(``slab.StaticSlab``), growing caches left-padded and masked (``OnnxModel.merge_carried``), or
for in-place caches written behind the running rows in the same buffers (column_cache.py) —
and :meth:`DecodeLoop.cancel`, then :meth:`DecodeLoop.step`: one decoder step per search.
:meth:`DecodeLoop.step_and_admit` does both at once: the arrivals are tokenized and encoded in
another thread during the step (:meth:`DecodeLoop.encode` touches no loop state) and join after
it (:meth:`DecodeLoop.join`). Inputs that finish leave at once, and a request whose sentences
are all done is returned by that step.

Every input keeps its own step count, length limit and position, so its result is the one it
gets decoding alone (the padded entries weigh exactly zero in attention; float sums may differ
in the last bits, see ``tests/service/inference/test_continuous.py``).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.inference.batching import pad_batch
from service.inference.beam import Beams, Hypotheses, concat_beams, select_step, start_beams
from service.inference.column_cache import COLUMN_STEP
from service.inference.device import DeviceModel
from service.inference.device_rows import DeviceSlab
from service.inference.onnx_decoder import OnnxModel, OnnxState
from service.inference.search import (
    Hypothesis,
    Prefixes,
    SearchOptions,
    forced_tokens,
    next_candidates,
)
from service.inference.slab import StaticSlab
from service.inference.translator import LengthLimits, Prepared, Translation, Translator


def encode_sources(model: OnnxModel, sources: list[list[int]], beam: int, pad_id: int
                   ) -> OnnxState:
    """The step-0 state of ``sources`` (token ids, eos included) for a search of ``beam``
    beams: ``beam`` rows per source, in source order. Reads nothing of a running search, so it
    may run in another thread while the decoder steps (:meth:`DecodeLoop.step_and_admit`)."""
    ids, mask = pad_batch(sources, pad_id)
    # joining rows hold no cache entries yet: the narrowest buffer never widens the running
    # one (in-place caches; column_cache.append_rows)
    state = model.encode(ids, mask, max_length=COLUMN_STEP)
    return model.reorder(state, np.repeat(np.arange(len(sources)), beam), group=beam)


class RunningSearch:
    """A beam search over a batch whose inputs change between steps.

    Inputs are identified by integer keys. State rows: ``K`` per input (``K`` = beam size),
    in the order of ``beams.origin``; static tensors live in a :class:`StaticSlab` (one row per
    input when its beams share them, ``DecoderContract.grouped_static``; else one per beam),
    carried state (caches) in plain arrays. The rows a step keeps (``_pending``) and the rows that
    join (``_joining``) are applied together just before the next decoder call, so that each
    running cache is copied once per step, not once to reorder and once more to join.
    """

    def __init__(self, model: OnnxModel | DeviceModel, options: SearchOptions, *,
                 start_id: int, eos_id: int) -> None:
        self.model = model
        self.options = options
        self.start_id, self.eos_id = start_id, eos_id
        self.beams: Beams | None = None
        self.slab: StaticSlab | DeviceSlab = model.new_slab()
        # an input's beams share one slab row when the graph allows it (OnnxState.group)
        self.shared = options.beam_size if model.grouped_static else 1
        self.carried: dict[str, Any] = {}  # numpy arrays, or OrtValues on the device
        self._pending: np.ndarray | None = None  # rows of ``carried`` the next step keeps
        self._joining: list[dict[str, Any]] = []  # carried state of joined rows
        self.order: np.ndarray | None = None  # array row of each beam row (OnnxState.order)
        self.finished: Hypotheses = {}
        self.prefixes: Prefixes = {}  # forced first tokens of inputs that have one, by key

    @property
    def slab_rows(self) -> int:
        """Slab rows per input: 1 when its beams share them, else one per beam."""
        return self.options.beam_size // self.shared

    def __len__(self) -> int:
        """Inputs still decoding."""
        return 0 if self.beams is None else len(self.beams.origin)

    def add(self, keys: list[int], state: OnnxState, max_length: np.ndarray,
            prefixes: Prefixes | None = None) -> None:
        """Append inputs to the running batch: ``state`` from :func:`encode_sources` (one row
        per beam, in input order), ``max_length`` ``(len(keys),)`` caps each one's generated
        tokens, ``prefixes`` forces the first tokens of some (by key)."""
        self.prefixes.update(prefixes or {})
        width = self.options.beam_size
        assert state.order is None  # rows in input order: added behind the running ones
        assert state.group == self.shared
        beams = start_beams(np.array(keys, dtype=np.int64), max_length, width, self.start_id)
        for key in keys:
            self.finished[key] = []
        self.slab.append(state.mask, state.static)
        if self.beams is None:
            self.beams, self.carried = beams, state.carried
        else:
            if self.order is not None:  # joined rows go behind the running ones
                self.order = np.concatenate([self.order, np.arange(
                    len(self.order), len(self.order) + len(beams.tokens))])
            self.beams = concat_beams(self.beams, beams)
            self._joining.append(state.carried)

    def drop(self, keys: set[int]) -> None:
        """Remove the given inputs (a cancelled request) from the batch."""
        if self.beams is None:
            return
        self._apply_pending()  # ``_keep`` below selects among the rows as they are now
        keep = np.flatnonzero(~np.isin(self.beams.origin, list(keys)))
        for key in keys:
            self.finished.pop(key, None)
            self.prefixes.pop(key, None)
        if len(keep) < len(self.beams.origin):
            self._keep(keep, self.beams.select(keep), self.beams.rows_of(keep))

    def step(self) -> Hypotheses:
        """One decoder call; the hypotheses of the inputs that finished in it, by key."""
        if self.beams is None:
            return {}
        self._apply_pending()
        mask, static = self.slab.view()
        width = self.options.beam_size
        steps = np.repeat(self.beams.steps, width)
        found, state = next_candidates(
            self.model, self.beams.tokens,
            OnnxState(mask, static, self.carried, self.order, self.shared),
            self.beams.histories, steps, k=2 * width, eos_id=self.eos_id, options=self.options,
            max_length=np.repeat(self.beams.max_length, width),
            forced=forced_tokens(self.prefixes, np.repeat(self.beams.origin, width), steps))
        self.carried = state.carried
        results: Hypotheses = {}
        beams, index = select_step(found, self.beams, self.finished, results,
                                   eos_id=self.eos_id, options=self.options,
                                   prefixes=self.prefixes)
        for key in results:
            self.prefixes.pop(key, None)
        self._keep(index[:: self.options.beam_size] // self.options.beam_size, beams, index)
        return results

    def _keep(self, kept: np.ndarray, beams: Beams, rows: np.ndarray) -> None:
        """Continue with ``beams`` (the inputs at old positions ``kept``, ascending) whose state
        rows are the old rows ``rows``: fill the slab rows of departed inputs with those of the
        last inputs, reorder beams and carried state to match, trim the cache."""
        width = self.options.beam_size
        count = len(kept)
        if not count:
            self.beams, self.carried, self.slab.rows = None, {}, 0
            self._pending, self._joining, self.order = None, [], None
            return
        before = 0 if self.beams is None else len(self.beams.origin)
        layout = np.arange(count)  # layout[p]: old input now at slab position p
        if count < before:
            gone = np.setdiff1d(np.arange(before), kept)
            holes = gone[gone < count]
            movers = kept[kept >= count]
            layout[holes] = movers
            self.slab.compact(_block_rows(movers, self.slab_rows),
                              _block_rows(holes, self.slab_rows), count * self.slab_rows)
        rank = np.empty(kept.max() + 1, dtype=np.int64)
        rank[kept] = np.arange(count)
        order = rank[layout]  # position in ``beams`` of the input at each slab position
        self.beams = beams.select(order)
        index = rows.reshape(count, width)[order].reshape(-1)
        parents = index if self.order is None else self.order[index]
        self.order, source = self.model.place_rows(parents, width, np.arange(count))
        # greedy with no departures keeps every row as it is: nothing to copy
        self._pending = None if _is_identity(source, before * width) else source

    def _apply_pending(self) -> None:
        """Gather the kept rows and append the joined ones (one copy), then trim the cache."""
        if self._pending is None and not self._joining:
            return
        self.carried = self.model.trim_cache(
            self.model.select_and_join(self.carried, self._pending, self._joining))
        self._pending, self._joining = None, []


def _is_identity(index: np.ndarray, rows: int) -> bool:
    """Whether gathering ``index`` from ``rows`` rows would return them unchanged."""
    return len(index) == rows and bool((index == np.arange(rows)).all())


def _block_rows(inputs: np.ndarray, width: int) -> np.ndarray:
    """State rows ``(len(inputs) * width,)`` of the given input positions."""
    return (inputs[:, None] * width + np.arange(width)).reshape(-1)


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
    target_prefix: list[list[int]] | None = None  # per text: forced first target tokens


@dataclass
class Encoded:
    """Arrivals tokenized and encoded, not yet joined (:meth:`DecodeLoop.encode`): per options,
    the arrivals with their sentences and length caps, and the step-0 state of all their
    sentences (``encode_sources``); requests answered without decoding (errors, no text)."""

    groups: dict[SearchOptions, list[tuple[Arrival, Prepared, np.ndarray]]] = field(
        default_factory=dict)
    states: dict[SearchOptions, OnnxState] = field(default_factory=dict)
    answered: list[Outcome] = field(default_factory=list)


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
        return self.join(self.encode(arrivals))

    def step_and_admit(self, arrivals: list[Arrival], encoder: Executor) -> list[Outcome]:
        """One decoder step of every running search while ``encoder`` (a thread) tokenizes
        and encodes ``arrivals``, which join after it: their first step is the next one. With
        nothing running (or no arrivals) they are admitted first and take this step.

        On a CPU the step leaves enough of the cores idle that the encoder's call costs little
        extra time (docs/benchmarks.md, ninth session), where admitting before the step adds
        all of it."""
        if not arrivals or not self.running:
            return self.admit(arrivals) + self.step()
        encoded = encoder.submit(self.encode, arrivals)
        try:
            outcomes = self.step()
        finally:
            ready = encoded.result()
        return outcomes + self.join(ready)

    def encode(self, arrivals: list[Arrival]) -> Encoded:
        """Tokenize and encode the arrivals, grouped by options. Changes nothing in the loop,
        so it may run in another thread while :meth:`step` runs (which decodes finished
        sentences with the same tokenizer: both are read-only calls of ``tokenizers``)."""
        translator = self.translator
        special = translator.manifest.special_tokens
        encoded = Encoded()
        for arrival in arrivals:
            try:
                prepared = translator.prepare(arrival.texts)
            except ValueError as err:
                encoded.answered.append((arrival.key, err))
                continue
            if not prepared.sources:
                encoded.answered.append(
                    (arrival.key, translator.assemble(arrival.texts, prepared, [])))
                continue
            lengths = np.array([len(source) for source in prepared.sources])
            options, limits = translator.with_generation(
                arrival.options, LengthLimits(max_length=arrival.max_length))
            limit = limits.for_sources(lengths, translator.manifest.max_positions)
            encoded.groups.setdefault(options, []).append((arrival, prepared, limit))
        for options, parts in encoded.groups.items():
            sources = [source for _, prepared, _ in parts for source in prepared.sources]
            state = encode_sources(translator.model, sources, options.beam_size,
                                   special["pad"])
            device = translator.device_model  # IO binding: the rows join on the device
            encoded.states[options] = state if device is None else device.upload(state)
        return encoded

    def join(self, encoded: Encoded) -> list[Outcome]:
        """Register encoded arrivals and append their rows to the running searches; the
        requests answered without decoding."""
        for options, parts in encoded.groups.items():
            keys: list[int] = []
            prefixes: Prefixes = {}
            for arrival, prepared, _ in parts:
                jobs = list(range(self._next_job, self._next_job + len(prepared.sources)))
                self._next_job += len(jobs)
                self.requests[arrival.key] = LoopRequest(arrival.texts, options, prepared, jobs)
                self.owner_of_job.update((job, arrival.key) for job in jobs)
                keys += jobs
                wanted = arrival.target_prefix or self.translator.default_prefix(
                    len(arrival.texts))
                if wanted is not None:  # each sentence has its text's prefix
                    prefixes.update((job, wanted[owner])
                                    for job, owner in zip(jobs, prepared.owners, strict=True))
            self._search_for(options).add(keys, encoded.states[options],
                                          np.concatenate([limit for _, _, limit in parts]),
                                          prefixes)
        return encoded.answered

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
            model = self.translator.device_model or self.translator.model
            search = RunningSearch(model, options, start_id=special["decoder_start"],
                                   eos_id=special["eos"])
            self.searches[options] = search
        return search
