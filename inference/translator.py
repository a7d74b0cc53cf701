"""``Translator``: text or token ids in, translations out, over an exported bundle."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inference.batching import pad_batch, token_budget_batches
from inference.beam import beam_search
from inference.bundle import Manifest, check_contract, load_bundle_manifest
from inference.languages import Languages, Pair
from inference.memory import HostMemory, OrtMemory
from inference.onnx_decoder import OnnxModel
from inference.options import DecodeOptions
from inference.search import Hypothesis, Prefixes, greedy_search
from inference.session import CUDA, create_session, resolve_providers, with_required_input
from inference.text import Segmented, segment
from inference.tokenizer import load_tokenizer

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
class Sentences:
    """Texts split into sentences and tokenized: ``sources[i]`` belongs to ``owners[i]``;
    ``layouts[j]`` puts text ``j``'s translated sentences back between its separators."""

    owners: list[int]
    sources: list[list[int]]
    truncated: list[bool]
    layouts: list[Segmented]


def length_limits(lengths: np.ndarray, options: DecodeOptions, model_max: int) -> np.ndarray:
    """Each input's cap on generated tokens ``(inputs,)``: ``options.max_length``, else
    ``2 * source + 10`` tokens, within ``[1, model_max]``."""
    limit = (np.full(len(lengths), options.max_length) if options.max_length is not None
             else (2 * lengths + 10).astype(np.int64))
    return np.clip(limit, 1, model_max)


def decode_options(options: DecodeOptions | None, fields: dict[str, Any]) -> DecodeOptions:
    """``options``, or options made of the keyword ``fields`` (not both)."""
    if options is not None and fields:
        raise TypeError(f"pass either options or {', '.join(sorted(fields))}, not both")
    return options if options is not None else DecodeOptions(**fields)


class Translator:
    """Batched greedy/beam translation with ONNX Runtime over one bundle."""

    def __init__(self, manifest: Manifest, model: OnnxModel, tokenizer: Any, provider: str,
                 max_batch_tokens: int = 4096) -> None:
        self.manifest = manifest
        self.model = model
        self.tokenizer = tokenizer
        self.provider = provider
        self.max_batch_tokens = max_batch_tokens
        self.languages = Languages.of(manifest)

    @classmethod
    def load(cls, path: str | Path, providers: list[str] | None = None,
             threads: int | None = None, require_gpu: bool = False,
             max_batch_tokens: int = 4096, *, io_binding: bool | None = None,
             decoder_spinning: bool = True) -> Translator:
        """Validate the bundle, create both sessions, load the tokenizer. The decoder state
        lives in the decoder's device memory, bound with IO binding, when ``io_binding`` (by
        default: when it runs on CUDA), else in host memory. ``decoder_spinning`` lets the
        decoder's idle threads spin between steps (the encoder's always sleep)."""
        directory = Path(path)
        manifest = load_bundle_manifest(directory)
        chosen = resolve_providers(providers)
        encoder = create_session(directory / "encoder.onnx", chosen, threads, require_gpu)
        decoder = create_session(directory / "decoder.onnx", chosen, threads, require_gpu,
                                 spinning=decoder_spinning)
        check_contract(directory, manifest, encoder, decoder)
        provider = decoder.get_providers()[0]
        bind = provider == CUDA if io_binding is None else io_binding
        top_k = manifest.decoder.top_k
        if bind and top_k is not None and top_k.input not in {
                arg.name for arg in decoder.get_inputs()}:
            # IO binding cannot bind an input that has a default (ONNX Runtime's initializer)
            decoder = create_session(directory / "decoder.onnx", chosen, threads, require_gpu,
                                     with_required_input(directory / "decoder.onnx",
                                                         top_k.input), decoder_spinning)
        memory = (OrtMemory("cuda" if provider == CUDA else "cpu", chosen, threads) if bind
                  else HostMemory())
        model = OnnxModel(manifest, encoder, decoder, memory)
        return cls(manifest, model, load_tokenizer(directory), provider, max_batch_tokens)

    @property
    def max_source_tokens(self) -> int:
        """Longest tokenized sentence (eos included) the encoder accepts."""
        return self.manifest.max_positions

    def translate_ids(self, sources: list[list[int]], options: DecodeOptions | None = None,
                      *, max_batch_tokens: int | None = None,
                      target_prefix: list[list[int]] | None = None,
                      **fields: Any) -> list[list[int]]:
        """Token level: best output ids per input (eos and ``target_prefix`` off), in input
        order; ``options`` or its fields as keywords (greedy unless ``beam_size`` is given)."""
        chosen = decode_options(options, fields if options else {"beam_size": 1, **fields})
        results = self.search(sources, chosen, max_batch_tokens, target_prefix)
        return [hyps[0].tokens for hyps in results]

    @property
    def generation(self) -> dict[str, Any]:
        """The checkpoint's generation config as export recorded it (``metadata.generation``:
        ``forced_eos``, ``banned_ids``, ``num_beams``, ``max_new_tokens``)."""
        found = self.manifest.metadata.get("generation")
        return found if isinstance(found, dict) else {}

    def default_prefix(self, count: int) -> list[list[int]] | None:
        """``count`` copies of the exported target's forced tokens (an M2M100 bundle's target
        language token, ``generate``'s ``forced_bos_token_id``), or None."""
        prefix = self.languages.target_prefix(self.languages.target)
        return [prefix] * count if prefix else None

    def with_generation(self, options: DecodeOptions) -> DecodeOptions:
        """The request's options with the checkpoint's banned tokens and forced eos added, and
        its ``max_new_tokens`` as the cap when the request gives none."""
        gen = self.generation
        max_length = options.max_length
        if max_length is None and gen.get("max_new_tokens"):
            max_length = int(gen["max_new_tokens"])
        banned = tuple(dict.fromkeys([*options.banned_ids, *gen.get("banned_ids", ())]))
        return replace(options, banned_ids=banned, max_length=max_length,
                       forced_eos=options.forced_eos or bool(gen.get("forced_eos", False)))

    def search(self, sources: list[list[int]], options: DecodeOptions,
               max_batch_tokens: int | None = None,
               target_prefix: list[list[int]] | None = None) -> list[list[Hypothesis]]:
        """Hypotheses for token-id inputs, sorted by length into budgeted sub-batches;
        ``target_prefix``: per input, tokens forced as its first ones (not in its output;
        default: the bundle's ``metadata.target_prefix``, a multilingual model's target)."""
        options = self.with_generation(options)
        if target_prefix is None:
            target_prefix = self.default_prefix(len(sources))
        budget = max_batch_tokens or self.max_batch_tokens
        results: list[list[Hypothesis]] = [[] for _ in sources]
        lengths = [len(source) for source in sources]
        for index in token_budget_batches(lengths, max(1, budget // options.beam_size)):
            ids, mask = pad_batch([sources[i] for i in index], self.manifest.special_tokens["pad"])
            limit = length_limits(mask.sum(1), options, self.manifest.max_positions)
            prefixes = ({row: target_prefix[i] for row, i in enumerate(index)}
                        if target_prefix is not None else None)
            found = self._search_batch(ids, mask, limit, options, prefixes)
            for i, hyps in zip(index, found, strict=True):
                results[i] = hyps
        return results

    def _search_batch(self, ids: np.ndarray, mask: np.ndarray, max_length: np.ndarray,
                      options: DecodeOptions, prefixes: Prefixes | None = None
                      ) -> list[list[Hypothesis]]:
        special = self.manifest.special_tokens
        state = self.model.encode(ids, mask, max_length=int(max_length.max()))
        search = greedy_search if options.beam_size == 1 else beam_search
        return search(self.model, state, batch=len(ids), start_id=special["decoder_start"],
                      eos_id=special["eos"], max_length=max_length, options=options,
                      prefixes=prefixes)

    def translate(self, texts: list[str], options: DecodeOptions | None = None, *,
                  return_scores: bool = True, on_too_long: TooLong = "truncate",
                  max_batch_tokens: int | None = None,
                  pairs: Sequence[Pair | None] | None = None,
                  target_prefix: list[list[int]] | None = None, **fields: Any
                  ) -> list[Translation]:
        """Text in, text out; long texts are split into sentences and re-joined. ``options``,
        or its fields as keywords (``DecodeOptions``: beam 4 by default). ``early_stopping``
        ends an input's beam search once it has ``beam_size`` finished hypotheses
        (CTranslate2's rule); by default it goes on while a running beam could still win
        (``generate``'s default). ``pairs``: per text, the ``(source, target)`` languages
        (None: the exported pair); a multilingual bundle serves any two of its languages
        (``inference.languages``; ``LanguageError`` for others). ``target_prefix``: per text,
        target tokens forced first in place of the target language's, left out of the text."""
        chosen = decode_options(options, fields)
        routes = self.routes(pairs, len(texts))
        sentences = self.prepare(texts, on_too_long, routes=routes)
        wanted = target_prefix or self.target_prefixes([tgt for _, tgt in routes])
        prefix = None if wanted is None else [wanted[owner] for owner in sentences.owners]
        hyps = self.search(sentences.sources, chosen, max_batch_tokens, prefix)
        return self.assemble(texts, sentences, hyps, return_scores)

    def routes(self, pairs: Sequence[Pair | None] | None, count: int) -> list[Pair]:
        """Each of ``count`` texts' ``(source, target)``: its entry of ``pairs``, checked, or
        the exported pair (``LanguageError`` naming the languages for an unserved one)."""
        if pairs is not None and len(pairs) != count:
            raise ValueError(f"pairs has {len(pairs)} entries for {count} texts")
        return [self.languages.check(pair) for pair in (pairs or [None] * count)]

    def target_prefixes(self, targets: Sequence[str]) -> list[list[int]] | None:
        """The tokens forced first for each target language; None when there are none."""
        prefixes = [self.languages.target_prefix(target) for target in targets]
        return prefixes if any(prefixes) else None

    def prepare(self, texts: list[str], on_too_long: TooLong = "truncate",
                routes: Sequence[Pair] | None = None) -> Sentences:
        """Split and tokenize: the sentences to decode and the text each belongs to;
        ``routes``: each text's ``(source, target)`` languages (default: the exported pair);
        the source's rules cut it, a multilingual bundle's sources carry the source's language
        token and a multi-target one's the target's ``>>xxx<<`` token."""
        pairs = list(routes or [(self.manifest.source_lang, self.manifest.target_lang)]
                     * len(texts))
        pieces, owners, layouts = self._segment(texts, pairs)
        sources_ids, truncated = self._encode(pieces, on_too_long,
                                              [pairs[owner] for owner in owners])
        return Sentences(owners, sources_ids, truncated, layouts)

    def assemble(self, texts: list[str], sentences: Sentences, hyps: list[list[Hypothesis]],
                 return_scores: bool = True) -> list[Translation]:
        """One :class:`Translation` per text from the hypotheses of its sentences."""
        return self._assemble(texts, sentences, hyps, return_scores)

    def _segment(self, texts: list[str], pairs: list[Pair]
                 ) -> tuple[list[str], list[int], list[Segmented]]:
        """Sentences to translate, the input each belongs to and each input's layout: a text
        longer than the model's positions is cut into sentences (``text.segment``, by the
        rules of its source language in ``pairs``)."""
        pieces: list[str] = []
        owners: list[int] = []
        layouts: list[Segmented] = []
        for owner, text in enumerate(texts):
            layout = Segmented((text,), (0,))
            source, target = pairs[owner]
            prefixed = len(self.languages.source_prefix(target))
            if prefixed + len(self.tokenizer(text)["input_ids"]) > self.max_source_tokens:
                cut = segment(text, language=source)
                layout = cut if cut.sentences else layout
            pieces += layout.sources
            owners += [owner] * len(layout.sentences)
            layouts.append(layout)
        return pieces, owners, layouts

    def _encode(self, pieces: list[str], on_too_long: TooLong, pairs: list[Pair]
                ) -> tuple[list[list[int]], list[bool]]:
        tokenized = self.tokenizer(pieces)["input_ids"] if pieces else []
        encoded = [self.languages.source_ids([*self.languages.source_prefix(target), *ids],
                                             source)
                   for ids, (source, target) in zip(tokenized, pairs, strict=True)]
        limit = self.max_source_tokens
        eos = self.manifest.special_tokens["eos"]
        truncated = [len(ids) > limit for ids in encoded]
        if any(truncated) and on_too_long == "error":
            raise InputTooLongError(f"a sentence has more than {limit} tokens, the model's "
                                    "maximum; shorten it or allow truncation")
        return [[*ids[: limit - 1], eos] if cut else ids
                for ids, cut in zip(encoded, truncated, strict=True)], truncated

    def _assemble(self, texts: list[str], sentences: Sentences, hyps: list[list[Hypothesis]],
                  return_scores: bool) -> list[Translation]:
        owners, sources, truncated = sentences.owners, sentences.sources, sentences.truncated
        decode = self.tokenizer.batch_decode
        best_texts = decode([h[0].tokens for h in hyps], skip_special_tokens=True)
        out = [Translation("", 0.0, "eos") for _ in texts]
        per_owner: dict[int, list[int]] = {}
        for piece, owner in enumerate(owners):
            per_owner.setdefault(owner, []).append(piece)
        for owner, piece_ids in per_owner.items():
            first = hyps[piece_ids[0]]
            result = out[owner]
            result.text = sentences.layouts[owner].join([best_texts[p] for p in piece_ids])
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
