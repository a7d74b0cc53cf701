"""A forced target prefix per input (CTranslate2's ``target_prefix``; ``generate``'s
``forced_bos_token_id`` for one token): golden tests on the scripted decoder, then the OPUS-MT
bundle against ``generate`` with rows of one batch forced to different first tokens, in
request-level and iteration-level (continuous) batching."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import MarianMTModel

from inference.beam import beam_search
from inference.continuous import Arrival, DecodeLoop
from inference.options import DecodeOptions
from inference.search import Hypothesis, greedy_search
from inference.translator import Translation, Translator
from tests.checkpoints import sample_sentences
from tests.inference.test_search import EOS, START, A, B, C, Scripted, log_p, start_state


def scripted(search: Callable[..., list[list[Hypothesis]]], prefixes: dict[int, list[int]],
             batch: int, **options: Any) -> list[list[Hypothesis]]:
    """``search`` (greedy or beam) over the scripted decoder with ``prefixes``."""
    return search(Scripted(), start_state(batch), batch=batch, start_id=START, eos_id=EOS,
                  max_length=np.full(batch, 10), options=DecodeOptions(**options),
                  prefixes=prefixes)


def test_greedy_rows_continue_their_own_prefix_which_is_not_output() -> None:
    free, after_b, after_ba = scripted(greedy_search, {1: [B], 2: [B, A]}, 3)
    assert [free[0].tokens, after_b[0].tokens, after_ba[0].tokens] == [[A], [C], []]
    # forced tokens score 0 and count towards the length
    assert after_b[0].score == pytest.approx((log_p((B,), C) + log_p((B, C), EOS)) / 3)
    assert after_ba[0].score == pytest.approx(log_p((B, A), EOS) / 3)


def test_beam_n_best_after_a_prefix() -> None:
    (hyps,) = scripted(beam_search, {0: [B]}, 1, beam_size=2, num_hypotheses=2,
                       length_penalty=0.0)
    assert [h.tokens for h in hyps] == [[C], []]  # [] is B then eos: the prefix is left out
    assert [h.score for h in hyps] == pytest.approx(
        [math.log(0.9) + math.log(0.97), math.log(0.05)])


@pytest.fixture(scope="module")
def opus(opus_mt_bundle: Path) -> Translator:
    return Translator.load(opus_mt_bundle, threads=1)


def first_tokens(translator: Translator, count: int) -> list[list[int]]:
    """Two different forced first tokens, alternating over ``count`` rows."""
    words = translator.tokenizer.convert_tokens_to_ids(["▁le", "▁chat"])
    assert translator.manifest.special_tokens["unk"] not in words
    return [[words[i % 2]] for i in range(count)]


def generate_forced(model_dir: Path, sources: list[list[int]], prefixes: list[list[int]],
                    beams: int) -> list[list[int]]:
    """``generate`` with ``forced_bos_token_id``, one call per forced token, rows back in
    order; the forced token and eos stripped."""
    model = MarianMTModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    out: list[list[int]] = [[] for _ in sources]
    for token in sorted({p[0] for p in prefixes}):
        rows = [i for i, p in enumerate(prefixes) if p[0] == token]
        width = max(len(sources[i]) for i in rows)
        ids = torch.tensor([sources[i] + [pad] * (width - len(sources[i])) for i in rows])
        mask = (torch.arange(width)[None, :] < torch.tensor(
            [len(sources[i]) for i in rows])[:, None]).long()
        with torch.no_grad():
            got = model.generate(input_ids=ids, attention_mask=mask, num_beams=beams,
                                 max_new_tokens=40, forced_bos_token_id=token, do_sample=False)
        for i, row in zip(rows, got[:, 2:].tolist(), strict=True):
            out[i] = row[: row.index(eos)] if eos in row else row
    return out


@pytest.mark.parametrize("beams", [1, 4])
def test_mixed_prefixes_in_one_batch_are_generates(opus: Translator, opus_mt_dir: Path,
                                                   beams: int) -> None:
    sources = list(opus.tokenizer(sample_sentences(30))["input_ids"])
    prefixes = first_tokens(opus, len(sources))
    expected = generate_forced(opus_mt_dir, sources, prefixes, beams)
    got = opus.translate_ids(sources, beam_size=beams, max_length=40, target_prefix=prefixes)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    assert same >= (1.0 if beams == 1 else 0.98) * len(sources), f"{same} of {len(sources)}"
    plain = opus.translate_ids(sources, beam_size=beams, max_length=40)
    assert got != plain  # the prefix changed what follows


@pytest.mark.parametrize("options", [DecodeOptions(beam_size=1),
                                     DecodeOptions(beam_size=4, num_hypotheses=2)])
def test_continuous_batching_gives_the_request_level_results(opus: Translator,
                                                             options: DecodeOptions) -> None:
    texts = sample_sentences(10)
    prefixes = first_tokens(opus, len(texts))
    want = opus.translate(texts, beam_size=options.beam_size,
                          num_hypotheses=options.num_hypotheses, target_prefix=prefixes)
    loop = DecodeLoop(opus)
    results: dict[int, list[Translation]] = {}
    assert loop.admit([Arrival(0, texts[:6], options, target_prefix=prefixes[:6])]) == []
    for key, outcome in loop.step():
        assert not isinstance(outcome, Exception)
        results[key] = outcome
    assert loop.admit([Arrival(1, texts[6:], options, target_prefix=prefixes[6:])]) == []
    while loop.running:  # the second request joined a running batch
        for key, done in loop.step():
            assert not isinstance(done, Exception)
            results[key] = done
    got = results[0] + results[1]
    assert [t.text for t in got] == [t.text for t in want]
    assert [[a.text for a in t.alternatives] for t in got] == [
        [a.text for a in t.alternatives] for t in want]
