"""``Translator``: text or token ids in, translations out, over an exported bundle."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from service.bundle import Manifest, check_contract, load_bundle_manifest
from service.inference.batching import pad_batch, token_budget_batches
from service.inference.beam import beam_search
from service.inference.device import DeviceModel, resolve_io_binding, with_required_input
from service.inference.onnx_decoder import OnnxModel
from service.inference.search import Hypothesis, Prefixes, SearchOptions, greedy_search
from service.inference.session import create_session, resolve_providers
from service.inference.text import join_sentences, split_sentences
from service.inference.tokenizer import load_tokenizer

log = logging.getLogger(__name__)
TooLong = Literal["truncate", "error"]


class InputTooLongError(ValueError):
    """A sentence exceeds the model's maximum positions and truncation is off."""


@dataclass
class Alternative:
    """One n-best entry."""

    text: str
    score: float


@dataclass
class Translation:
    """The result for one input text."""

    text: str
    score: float
    finish_reason: str  # "eos" or "length" (any sentence cut by max_length)
    alternatives: list[Alternative] = field(default_factory=list)  # n-best, best first
    truncated: bool = False  # an over-long sentence was cut to the model's maximum
    source_tokens: int = 0
    target_tokens: int = 0


@dataclass(frozen=True)
class Prepared:
    """Texts split into sentences and tokenized: ``sources[i]`` belongs to ``owners[i]``."""

    owners: list[int]
    sources: list[list[int]]
    truncated: list[bool]


@dataclass(frozen=True, kw_only=True)
class LengthLimits:
    """``max_length`` caps generated tokens absolutely; otherwise ``a * source + b``."""

    max_length: int | None = None
    a: float = 2.0
    b: int = 10

    def for_sources(self, lengths: np.ndarray, model_max: int) -> np.ndarray:
        limit = (np.full(len(lengths), self.max_length) if self.max_length is not None
                 else (self.a * lengths + self.b).astype(np.int64))
        return np.clip(limit, 1, model_max)


class Translator:
    """Batched greedy/beam translation with ONNX Runtime over one bundle."""

    def __init__(self, manifest: Manifest, model: OnnxModel, tokenizer: Any, provider: str,
                 max_batch_tokens: int = 4096, device_model: DeviceModel | None = None) -> None:
        self.manifest = manifest
        self.model = model
        self.tokenizer = tokenizer
        self.provider = provider
        self.max_batch_tokens = max_batch_tokens
        self.device_model = device_model  # IO binding: the state stays on the device

    @classmethod
    def load(cls, path: str | Path, providers: list[str] | None = None,
             threads: int | None = None, require_gpu: bool = False,
             max_batch_tokens: int = 4096, io_binding: bool | None = None,
             decoder_spinning: bool = True) -> Translator:
        """Validate the bundle, create both sessions, load the tokenizer. ``io_binding``
        keeps the decoder state on the device between steps (``None``: when on CUDA);
        ``decoder_spinning`` lets the decoder's idle threads spin between steps, the encoder's
        always sleep (docs/benchmarks.md, "Another CPU, and decoder spinning")."""
        directory = Path(path)
        manifest = load_bundle_manifest(directory)
        chosen = resolve_providers(providers)
        bind = resolve_io_binding(manifest, chosen, io_binding)
        top_k = manifest.decoder.top_k
        graph = (with_required_input(directory / "decoder.onnx", top_k.input)
                 if bind and top_k is not None else None)
        encoder = create_session(directory / "encoder.onnx", chosen, threads, require_gpu)
        decoder = create_session(directory / "decoder.onnx", chosen, threads, require_gpu, graph,
                                 decoder_spinning)
        check_contract(directory, manifest, encoder, decoder)
        tokenizer = load_tokenizer(directory)
        model = OnnxModel(manifest, encoder, decoder)
        device_model = DeviceModel(model, chosen, threads) if bind else None
        return cls(manifest, model, tokenizer, decoder.get_providers()[0], max_batch_tokens,
                   device_model)

    @property
    def max_source_tokens(self) -> int:
        """Longest tokenized sentence (eos included) the encoder accepts."""
        return self.manifest.max_positions

    def translate_ids(self, sources: list[list[int]], *, beam_size: int = 1,
                      num_hypotheses: int = 1, length_penalty: float = 1.0,
                      min_length: int = 0, max_length: int | None = None,
                      no_repeat_ngram_size: int = 0, max_batch_tokens: int | None = None,
                      early_stopping: bool = False,
                      target_prefix: list[list[int]] | None = None) -> list[list[int]]:
        """Token level: best output ids per input (eos and ``target_prefix`` off), in input
        order."""
        options = make_options(beam_size, num_hypotheses, length_penalty, min_length,
                               no_repeat_ngram_size, early_stopping)
        results = self.search(sources, options, LengthLimits(max_length=max_length),
                              max_batch_tokens, target_prefix)
        return [hyps[0].tokens for hyps in results]

    @property
    def generation(self) -> dict[str, Any]:
        """The checkpoint's generation config as export recorded it (``metadata.generation``:
        ``forced_eos``, ``banned_ids``, ``num_beams``, ``max_new_tokens``)."""
        found = self.manifest.metadata.get("generation")
        return found if isinstance(found, dict) else {}

    def default_prefix(self, count: int) -> list[list[int]] | None:
        """``count`` copies of the bundle's recorded target prefix (an M2M100 bundle's target
        language token, ``generate``'s ``forced_bos_token_id``), or None."""
        prefix = self.manifest.metadata.get("target_prefix")
        return [list(prefix)] * count if prefix else None

    def with_generation(self, options: SearchOptions, limits: LengthLimits
                        ) -> tuple[SearchOptions, LengthLimits]:
        """The request's options with the checkpoint's banned tokens and forced eos, and its
        ``max_new_tokens`` as the cap when the request gives none."""
        gen = self.generation
        options = replace(options, banned_ids=tuple(gen.get("banned_ids", ())),
                          forced_eos=bool(gen.get("forced_eos", False)))
        if limits.max_length is None and gen.get("max_new_tokens"):
            limits = replace(limits, max_length=int(gen["max_new_tokens"]))
        return options, limits

    def search(self, sources: list[list[int]], options: SearchOptions, limits: LengthLimits,
               max_batch_tokens: int | None = None,
               target_prefix: list[list[int]] | None = None) -> list[list[Hypothesis]]:
        """Hypotheses for token-id inputs, sorted by length into budgeted sub-batches;
        ``target_prefix``: per input, tokens forced as its first ones (not in its output;
        default: the bundle's ``metadata.target_prefix``, a multilingual model's target)."""
        options, limits = self.with_generation(options, limits)
        if target_prefix is None:
            target_prefix = self.default_prefix(len(sources))
        budget = max_batch_tokens or self.max_batch_tokens
        results: list[list[Hypothesis]] = [[] for _ in sources]
        lengths = [len(source) for source in sources]
        for index in token_budget_batches(lengths, max(1, budget // options.beam_size)):
            ids, mask = pad_batch([sources[i] for i in index], self.manifest.special_tokens["pad"])
            limit = limits.for_sources(mask.sum(1), self.manifest.max_positions)
            prefixes = ({row: target_prefix[i] for row, i in enumerate(index)}
                        if target_prefix is not None else None)
            found = self._search_batch(ids, mask, limit, options, prefixes)
            for i, hyps in zip(index, found, strict=True):
                results[i] = hyps
        return results

    def _search_batch(self, ids: np.ndarray, mask: np.ndarray, max_length: np.ndarray,
                      options: SearchOptions, prefixes: Prefixes | None = None
                      ) -> list[list[Hypothesis]]:
        special = self.manifest.special_tokens
        state = self.model.encode(ids, mask, max_length=int(max_length.max()))
        decoder: OnnxModel | DeviceModel = self.model
        if self.device_model is not None:
            decoder, state = self.device_model, self.device_model.upload(state)
        search = greedy_search if options.beam_size == 1 else beam_search
        return search(decoder, state, batch=len(ids), start_id=special["decoder_start"],
                      eos_id=special["eos"], max_length=max_length, options=options,
                      prefixes=prefixes)

    def translate(self, texts: list[str], *, beam_size: int = 4, num_hypotheses: int = 1,
                  length_penalty: float = 1.0, max_length: int | None = None,
                  min_length: int = 0, no_repeat_ngram_size: int = 0,
                  return_scores: bool = True, on_too_long: TooLong = "truncate",
                  max_batch_tokens: int | None = None, early_stopping: bool = False,
                  target_prefix: list[list[int]] | None = None) -> list[Translation]:
        """Text in, text out; long texts are split into sentences and re-joined.
        ``early_stopping`` ends an input's beam search once it has ``beam_size`` finished
        hypotheses (CTranslate2's rule, ``generate(early_stopping=True)``); by default it goes
        on while a running beam could still win (``generate``'s default). ``target_prefix``:
        per text, target tokens forced first (e.g. a language token), left out of the text."""
        options = make_options(beam_size, num_hypotheses, length_penalty, min_length,
                               no_repeat_ngram_size, early_stopping)
        prepared = self.prepare(texts, on_too_long)
        prefix = (None if target_prefix is None
                  else [target_prefix[owner] for owner in prepared.owners])
        hyps = self.search(prepared.sources, options, LengthLimits(max_length=max_length),
                           max_batch_tokens, prefix)
        return self.assemble(texts, prepared, hyps, return_scores)

    def prepare(self, texts: list[str], on_too_long: TooLong = "truncate") -> Prepared:
        """Split and tokenize: the sentences to decode and the text each belongs to."""
        pieces, owners = self._segment(texts)
        sources, truncated = self._encode(pieces, on_too_long)
        return Prepared(owners, sources, truncated)

    def assemble(self, texts: list[str], prepared: Prepared, hyps: list[list[Hypothesis]],
                 return_scores: bool = True) -> list[Translation]:
        """One :class:`Translation` per text from the hypotheses of its sentences."""
        return self._assemble(texts, prepared.owners, prepared.sources, hyps,
                              prepared.truncated, return_scores)

    def _segment(self, texts: list[str]) -> tuple[list[str], list[int]]:
        """Sentences to translate and the input each belongs to."""
        pieces: list[str] = []
        owners: list[int] = []
        for owner, text in enumerate(texts):
            whole = self.tokenizer(text)["input_ids"]
            parts = [text] if len(whole) <= self.max_source_tokens else split_sentences(text)
            pieces += parts
            owners += [owner] * len(parts)
        return pieces, owners

    def _encode(self, pieces: list[str], on_too_long: TooLong) -> tuple[list[list[int]],
                                                                         list[bool]]:
        # a multi-target model's target token (OPUS-MT ``>>fra<<``) leads every source
        prefix = list(self.manifest.metadata.get("source_prefix", []))
        encoded = [[*prefix, *ids] for ids in self.tokenizer(pieces)["input_ids"]] if pieces else []
        limit = self.max_source_tokens
        eos = self.manifest.special_tokens["eos"]
        truncated = [len(ids) > limit for ids in encoded]
        if any(truncated) and on_too_long == "error":
            raise InputTooLongError(f"a sentence has more than {limit} tokens, the model's "
                                    "maximum; shorten it or allow truncation")
        return [[*ids[: limit - 1], eos] if cut else ids
                for ids, cut in zip(encoded, truncated, strict=True)], truncated

    def _assemble(self, texts: list[str], owners: list[int], sources: list[list[int]],
                  hyps: list[list[Hypothesis]], truncated: list[bool], return_scores: bool
                  ) -> list[Translation]:
        decode = self.tokenizer.batch_decode
        best_texts = decode([h[0].tokens for h in hyps], skip_special_tokens=True)
        out = [Translation("", 0.0, "eos") for _ in texts]
        per_owner: dict[int, list[int]] = {}
        for piece, owner in enumerate(owners):
            per_owner.setdefault(owner, []).append(piece)
        for owner, piece_ids in per_owner.items():
            first = hyps[piece_ids[0]]
            result = out[owner]
            result.text = join_sentences([best_texts[p] for p in piece_ids])
            result.score = float(np.mean([hyps[p][0].score for p in piece_ids]))
            lengthy = any(hyps[p][0].finish_reason == "length" for p in piece_ids)
            result.finish_reason = "length" if lengthy else "eos"
            result.truncated = any(truncated[p] for p in piece_ids)
            result.source_tokens = sum(len(sources[p]) for p in piece_ids)
            result.target_tokens = sum(len(hyps[p][0].tokens) + 1 for p in piece_ids)
            if len(piece_ids) == 1:
                texts_n = decode([h.tokens for h in first], skip_special_tokens=True)
                result.alternatives = [Alternative(t, h.score)
                                       for t, h in zip(texts_n, first, strict=True)]
            else:
                result.alternatives = [Alternative(result.text, result.score)]
            if not return_scores:
                result.score = float("nan")
        return out


def make_options(beam_size: int, num_hypotheses: int, length_penalty: float, min_length: int,
                 no_repeat_ngram_size: int, early_stopping: bool = False) -> SearchOptions:
    """Validated search options; a bad value raises ``ValueError`` naming the field."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    if not 1 <= num_hypotheses <= beam_size:
        raise ValueError(f"num_hypotheses must be between 1 and beam_size ({beam_size}), "
                         f"got {num_hypotheses}")
    if min_length < 0 or no_repeat_ngram_size < 0:
        raise ValueError("min_length and no_repeat_ngram_size must not be negative")
    return SearchOptions(beam_size=beam_size, num_hypotheses=num_hypotheses,
                         length_penalty=length_penalty, min_length=min_length,
                         no_repeat_ngram_size=no_repeat_ngram_size,
                         early_stopping=early_stopping)
