"""Iteration-level scheduling (continuous batching) for encoder-decoder decoding.

A :class:`DecodeLoop` keeps one running beam search per set of search options (greedy is beam
1, which gives the same tokens and scores as :func:`greedy_search`). Its driver calls, between
two steps, :meth:`DecodeLoop.admit` — new requests' sentences are encoded and **join** the
running batch (their rows are appended to the batch's ``KVCache``, the narrower side's caches
and sources zero-padded and masked) — and :meth:`DecodeLoop.cancel`, then
:meth:`DecodeLoop.step`: one decoder step per search.
:meth:`DecodeLoop.step_and_admit` does both at once: the arrivals are tokenized and encoded in
another thread during the step (:meth:`DecodeLoop.encode` touches no loop state) and join after
it (:meth:`DecodeLoop.join`). Inputs that finish leave at once, and a request whose sentences
are all done is returned by that step.

Every input keeps its own step count, length limit and position, so its result is the one it
gets decoding alone (the padded entries weigh exactly zero in attention; float sums may differ
in the last bits, see ``tests/inference/test_continuous.py``).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np

from inference.batching import pad_batch
from inference.beam import Beams, Hypotheses, concat_beams, select_step, start_beams
from inference.kv_cache import COLUMN_STEP, KVCache
from inference.languages import Pair
from inference.onnx_decoder import OnnxModel
from inference.options import DecodeOptions
from inference.search import Hypothesis, Prefixes, forced_tokens, next_candidates
from inference.translator import Sentences, Translation, Translator, length_limits


def encode_sources(model: OnnxModel, sources: list[list[int]], beam: int, pad_id: int
                   ) -> KVCache:
    """The step-0 state of ``sources`` (token ids, eos included) for a search of ``beam``
    beams: ``beam`` rows per source, in source order. Reads nothing of a running search, so it
    may run in another thread while the decoder steps (:meth:`DecodeLoop.step_and_admit`)."""
    ids, mask = pad_batch(sources, pad_id)
    # joining rows hold no cache entries yet: the narrowest buffer never widens the running one
    state = model.encode(ids, mask, max_length=COLUMN_STEP)
    return model.reorder(state, np.repeat(np.arange(len(sources)), beam))


class RunningSearch:
    """A beam search over a batch whose inputs change between steps.

    Inputs are identified by integer keys; ``K`` state rows per input (``K`` = beam size), in
    the order of ``beams.origin``, in one :class:`KVCache`: the rows of finished or cancelled
    inputs leave it after each step and the rows of new inputs are appended to it."""

    def __init__(self, model: OnnxModel, options: DecodeOptions, *, start_id: int,
                 eos_id: int) -> None:
        self.model = model
        self.options = options
        self.start_id, self.eos_id = start_id, eos_id
        self.beams: Beams | None = None
        self.state: KVCache | None = None
        self.finished: Hypotheses = {}
        self.prefixes: Prefixes = {}  # forced first tokens of inputs that have one, by key

    def __len__(self) -> int:
        """Inputs still decoding."""
        return 0 if self.beams is None else len(self.beams.origin)

    def add(self, keys: list[int], state: KVCache, max_length: np.ndarray,
            prefixes: Prefixes | None = None) -> None:
        """Append inputs to the running batch: ``state`` from :func:`encode_sources` (one row
        per beam, in input order), ``max_length`` ``(len(keys),)`` caps each one's generated
        tokens, ``prefixes`` forces the first tokens of some (by key)."""
        self.prefixes.update(prefixes or {})
        beams = start_beams(np.array(keys, dtype=np.int64), max_length, self.options.beam_size,
                            self.start_id)
        for key in keys:
            self.finished[key] = []
        if self.beams is None or self.state is None:
            self.beams, self.state = beams, state
        else:
            self.beams = concat_beams(self.beams, beams)
            self.state = self.model.join(self.state, state)

    def drop(self, keys: set[int]) -> None:
        """Remove the given inputs (a cancelled request) from the batch."""
        if self.beams is None:
            return
        keep = np.flatnonzero(~np.isin(self.beams.origin, list(keys)))
        for key in keys:
            self.finished.pop(key, None)
            self.prefixes.pop(key, None)
        if len(keep) < len(self.beams.origin):
            self._keep(self.beams.select(keep), self.beams.rows_of(keep))

    def step(self) -> Hypotheses:
        """One decoder call; the hypotheses of the inputs that finished in it, by key."""
        if self.beams is None or self.state is None:
            return {}
        width = self.options.beam_size
        steps = np.repeat(self.beams.steps, width)
        found, self.state = next_candidates(
            self.model, self.beams.tokens, self.state, self.beams.histories, steps,
            k=2 * width, eos_id=self.eos_id, options=self.options,
            max_length=np.repeat(self.beams.max_length, width),
            forced=forced_tokens(self.prefixes, np.repeat(self.beams.origin, width), steps))
        results: Hypotheses = {}
        beams, index = select_step(found, self.beams, self.finished, results,
                                   eos_id=self.eos_id, options=self.options,
                                   prefixes=self.prefixes)
        for key in results:
            self.prefixes.pop(key, None)
        self._keep(beams, index)
        return results

    def _keep(self, beams: Beams, rows: np.ndarray) -> None:
        """Continue with ``beams``, whose state rows are the old rows ``rows``; shrink the
        buffers when inputs left."""
        assert self.state is not None and self.beams is not None
        if not len(beams.origin):
            self.beams, self.state = None, None
            return
        left = len(beams.origin) < len(self.beams.origin)
        self.beams, self.state = beams, self.model.reorder(self.state, rows)
        if left:
            self.state.trim()


@dataclass
class LoopRequest:
    """A request inside the loop: its texts, options, sentences and their results so far."""

    texts: list[str]
    options: DecodeOptions  # of its search: without the length cap
    sentences: Sentences
    jobs: list[int]
    done: dict[int, list[Hypothesis]] = field(default_factory=dict)


Outcome = tuple[int, list[Translation] | Exception]  # request key and its result or error


@dataclass(frozen=True)
class Arrival:
    """A request to admit: its key, texts and decoding options."""

    key: int
    texts: list[str]
    options: DecodeOptions
    target_prefix: list[list[int]] | None = None  # per text: forced first target tokens
    pair: Pair | None = None  # (source, target) languages of all its texts; None: exported


@dataclass
class Encoded:
    """Arrivals tokenized and encoded, not yet joined (:meth:`DecodeLoop.encode`): per options,
    the arrivals with their sentences and length caps, and the step-0 state of all their
    sentences (``encode_sources``); requests answered without decoding (errors, no text).
    Options are those of a search: arrivals that differ only in ``max_length`` share one."""

    groups: dict[DecodeOptions, list[tuple[Arrival, Sentences, np.ndarray]]] = field(
        default_factory=dict)
    states: dict[DecodeOptions, KVCache] = field(default_factory=dict)
    answered: list[Outcome] = field(default_factory=list)


class DecodeLoop:
    """Requests in, finished requests out; not thread-safe (one worker thread drives it)."""

    def __init__(self, translator: Translator) -> None:
        if not translator.model.joinable:
            raise ValueError(f"{translator.manifest.name}: bundle cannot join running batches "
                             "(no cache mask); re-export it with `python -m training.export`")
        self.translator = translator
        self.searches: dict[DecodeOptions, RunningSearch] = {}
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
        extra time, where admitting before the step adds all of it."""
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
                route = translator.languages.check(arrival.pair)
                sentences = translator.prepare(arrival.texts, routes=[route] * len(
                    arrival.texts))
            except ValueError as err:  # an unserved language (LanguageError), the tokenizer's
                encoded.answered.append((arrival.key, err))
                continue
            if not sentences.sources:
                encoded.answered.append(
                    (arrival.key, translator.assemble(arrival.texts, sentences, [])))
                continue
            lengths = np.array([len(source) for source in sentences.sources])
            options = translator.with_generation(arrival.options)
            limit = length_limits(lengths, options, translator.manifest.max_positions)
            search = replace(options, max_length=None)
            encoded.groups.setdefault(search, []).append((arrival, sentences, limit))
        for options, parts in encoded.groups.items():
            sources = [source for _, sentences, _ in parts for source in sentences.sources]
            encoded.states[options] = encode_sources(translator.model, sources,
                                                     options.beam_size, special["pad"])
        return encoded

    def join(self, encoded: Encoded) -> list[Outcome]:
        """Register encoded arrivals and append their rows to the running searches; the
        requests answered without decoding."""
        for options, parts in encoded.groups.items():
            keys: list[int] = []
            prefixes: Prefixes = {}
            for arrival, sentences, _ in parts:
                jobs = list(range(self._next_job, self._next_job + len(sentences.sources)))
                self._next_job += len(jobs)
                self.requests[arrival.key] = LoopRequest(arrival.texts, options, sentences, jobs)
                self.owner_of_job.update((job, arrival.key) for job in jobs)
                keys += jobs
                _, target = self.translator.languages.check(arrival.pair)
                wanted = arrival.target_prefix or self.translator.target_prefixes(
                    [target] * len(arrival.texts))
                if wanted is not None:  # each sentence has its text's prefix
                    prefixes.update((job, wanted[owner])
                                    for job, owner in zip(jobs, sentences.owners, strict=True))
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
        return key, self.translator.assemble(request.texts, request.sentences, ordered)

    def _search_for(self, options: DecodeOptions) -> RunningSearch:
        search = self.searches.get(options)
        if search is None:
            special = self.translator.manifest.special_tokens
            search = RunningSearch(self.translator.model, options,
                                   start_id=special["decoder_start"], eos_id=special["eos"])
            self.searches[options] = search
        return search
