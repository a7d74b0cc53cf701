"""The service ``Translator`` on the bundles users bring besides the project Transformer: the
project LSTM and GRU (greedy against PyTorch, beam search against a plain reference search
written here), and a MarianMT checkpoint with untied embeddings, a logits bias and pad as the
decoder start (greedy and beam against ``generate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import MarianMTModel

from inference import Translator
from tests.conftest import tiny_overrides
from tests.export_fixtures import export
from training.checkpoint import load_model_dir
from training.config import load_config
from training.decode import greedy_decode
from training.models.rnn import RNNSeq2Seq
from training.train import Trainer

MAX_LENGTH = 10
EOS, START = 1, 0  # the project models' ids (model_config.json)


def random_sources(count: int, vocab: int, seed: int) -> list[list[int]]:
    """``count`` eos-ended id lists of 1 to 9 tokens (special ids below 4 avoided)."""
    rng = np.random.default_rng(seed)
    return [[*rng.integers(4, vocab - 1, int(rng.integers(1, 10))).tolist(), EOS]
            for _ in range(count)]


def padded(sources: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(B, S)`` ids and their mask."""
    ids = torch.full((len(sources), max(map(len, sources))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, source in enumerate(sources):
        ids[row, : len(source)] = torch.tensor(source)
        mask[row, : len(source)] = 1
    return ids, mask


@torch.no_grad()
def reference_beam(model: RNNSeq2Seq, source: list[int], *, beam: int, length_penalty: float,
                   max_length: int) -> list[int]:
    """Best hypothesis of a plain beam search, ``generate``'s rules, one input at a time:
    every prefix rescored by a full teacher-forced forward pass (no state, no reordering).

    Each step ranks the ``2 * beam`` best (prefix + token) by summed log-prob; an eos among
    the first ``beam`` of them (or any of those at the length limit) finishes with its sum
    divided by its length ** ``length_penalty``; the first ``beam`` others run on. The search
    ends at the limit, or once ``beam`` have finished and the best running sum, normalised
    by the current length, cannot beat the worst of them."""
    src, mask = padded([source], 0)
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[float, list[int]]] = []
    for length in range(1, max_length + 1):
        prefixes = torch.tensor([[START, *tokens] for tokens, _ in live])
        logits = model(src.expand(len(live), -1), mask.expand(len(live), -1), prefixes)
        log_probs = torch.log_softmax(logits[:, -1].float(), dim=-1).double()
        totals = torch.tensor([score for _, score in live], dtype=torch.float64)[:, None]
        values, flat = (totals + log_probs).flatten().topk(2 * beam)
        running: list[tuple[list[int], float]] = []
        for rank, (score, index) in enumerate(zip(values.tolist(), flat.tolist(), strict=True)):
            tokens, token = live[index // log_probs.size(1)][0], index % log_probs.size(1)
            if token == EOS or length == max_length:
                if rank < beam:
                    ended = tokens if token == EOS else [*tokens, token]
                    finished.append((score / length ** length_penalty, ended))
            elif len(running) < beam:
                running.append(([*tokens, token], score))
        finished = sorted(finished, key=lambda item: -item[0])[:beam]
        if length == max_length or (len(finished) == beam and (
                not running or running[0][1] / length ** length_penalty <= finished[-1][0])):
            break
        live = running
    return finished[0][1]


@pytest.mark.parametrize("bundle_name", ["lstm_bundle", "gru_bundle"])
def test_rnn_bundle_greedy_equals_pytorch(bundle_name: str, request: pytest.FixtureRequest
                                          ) -> None:
    bundle: Path = request.getfixturevalue(bundle_name)
    model, cfg = load_model_dir(bundle.parent / "model")
    sources = random_sources(8, cfg.vocab_size, seed=21)
    ids, mask = padded(sources, cfg.pad_id)
    expected = greedy_decode(model, ids, mask, start_id=cfg.decoder_start_id, eos_id=cfg.eos_id,
                             max_len=MAX_LENGTH)
    assert Translator.load(bundle).translate_ids(sources, max_length=MAX_LENGTH) == expected


@pytest.fixture(scope="module", params=["lstm", "gru"])
def ending_rnn_bundle(request: pytest.FixtureRequest, tiny_data: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LSTM/GRU trained briefly on the synthetic pairs, exported: unlike random
    weights it ends its hypotheses with eos at varied lengths."""
    root = tmp_path_factory.mktemp(request.param)
    overrides = [*tiny_overrides(tiny_data, root / "run", request.param), "max_steps=150",
                 "eval_every=150", "model.dropout=0", "label_smoothing=0"]
    Trainer(load_config(None, overrides)).run()
    return export(root / "run" / "best", root / "bundle")


@pytest.mark.parametrize(("beam", "penalty"), [(3, 1.0), (4, 0.6), (2, 0.0), (4, 2.0)])
def test_rnn_bundle_beam_equals_a_plain_reference_search(ending_rnn_bundle: Path, beam: int,
                                                         penalty: float) -> None:
    model, cfg = load_model_dir(ending_rnn_bundle.parent / "run" / "best")
    assert isinstance(model, RNNSeq2Seq) and (cfg.eos_id, cfg.decoder_start_id) == (EOS, START)
    sources = random_sources(8, cfg.vocab_size, seed=22)
    expected = [reference_beam(model, source, beam=beam, length_penalty=penalty,
                               max_length=MAX_LENGTH) for source in sources]
    got = Translator.load(ending_rnn_bundle).translate_ids(
        sources, beam_size=beam, length_penalty=penalty, max_length=MAX_LENGTH)
    assert len({len(tokens) for tokens in got}) >= 3  # ended by eos at varied lengths
    assert got == expected


def generate(model_dir: Path, sources: list[list[int]], pad: int, beam: int
             ) -> list[list[int]]:
    """``generate`` on the checkpoint: ids without the start token and eos."""
    model = MarianMTModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    ids, mask = padded(sources, pad)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, num_beams=beam,
                             do_sample=False, max_new_tokens=MAX_LENGTH,
                             forced_eos_token_id=None, min_length=0)
    eos = model.config.eos_token_id
    rows = [[t for t in row if t != pad] for row in out[:, 1:].tolist()]
    return [row[: row.index(eos)] if eos in row else row for row in rows]


@pytest.mark.parametrize("beam", [1, 3])
def test_custom_marian_bundle_equals_generate(marian_bundle: Path, beam: int) -> None:
    """Untied embeddings, a non-zero logits bias, pad (299) as the decoder start."""
    translator = Translator.load(marian_bundle)
    tokens = translator.manifest.special_tokens
    assert tokens["pad"] == tokens["decoder_start"] == 299
    sources = random_sources(8, 299, seed=23)
    expected = generate(marian_bundle.parent / "model", sources, tokens["pad"], beam)
    assert translator.translate_ids(sources, beam_size=beam, max_length=MAX_LENGTH) == expected
