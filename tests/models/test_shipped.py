"""The shipped models (``models/<name>``) on a fixed slice of the test split.

``tests/data/en-fr-test-slice.jsonl``: every 25th KJV -> Louis Segond pair (source version
``k``, reference ``l``) of ``data/en-fr/test.jsonl``, 40 verses from Genesis to Revelation.
The ONNX bundle's greedy ids must equal PyTorch greedy decoding of ``models/<name>/weights``
(the weights the graphs were exported from), and BLEU must clear a floor that no broken model
reaches: on this slice a one-verse shift of the model's own output scores under 1 BLEU, the
English source 0.2, an empty output 0, while the models score 12.8 (Transformer) and 9.3
(LSTM) greedy. The floors hold for any better-trained replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from inference import Translator
from tests.conftest import REPO
from training.checkpoint import load_model_dir
from training.data import read_examples
from training.decode import greedy_decode
from training.metrics import corpus_scores

SLICE = Path(__file__).resolve().parents[1] / "data" / "en-fr-test-slice.jsonl"
FLOORS = {"transformer-en-fr": 8.0, "lstm-en-fr": 5.0}  # greedy BLEU, well below the models'
MAX_LENGTH = 96  # above every non-looping output; a looping one is cut at the same step by both
INT8_AGREEMENT = 60.0  # BLEU of int8 output against fp32 output (measured 91 and 86)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Shipped:
    """One shipped model with the slice's sources, references and its greedy ids."""

    name: str
    translator: Translator
    sources: list[str]
    references: list[str]
    source_ids: list[list[int]]
    greedy_ids: list[list[int]]


@pytest.fixture(scope="module", params=list(FLOORS))
def shipped(request: pytest.FixtureRequest) -> Shipped:
    name: str = request.param
    translator = Translator.load(REPO / "models" / name)
    examples = list(read_examples(SLICE))
    assert len(examples) == 40 and {(e.src_version, e.tgt_version) for e in examples} == {
        ("k", "l")}
    sources = [example.src for example in examples]
    ids = [translator.tokenizer(text)["input_ids"] for text in sources]
    greedy = translator.translate_ids(ids, beam_size=1, max_length=MAX_LENGTH)
    return Shipped(name, translator, sources, [example.tgt for example in examples], ids, greedy)


def torch_greedy(weights: Path, sources: list[list[int]]) -> list[list[int]]:
    """Greedy ids of the training package's model loaded from ``weights``, one padded batch."""
    model, cfg = load_model_dir(weights)
    ids = torch.full((len(sources), max(map(len, sources))), cfg.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, source in enumerate(sources):
        ids[row, : len(source)] = torch.tensor(source)
        mask[row, : len(source)] = 1
    return greedy_decode(model, ids, mask, start_id=cfg.decoder_start_id, eos_id=cfg.eos_id,
                         max_len=MAX_LENGTH)


def test_bundle_greedy_ids_equal_pytorch_greedy_of_the_weights(shipped: Shipped) -> None:
    expected = torch_greedy(REPO / "models" / shipped.name / "weights", shipped.source_ids)
    assert shipped.greedy_ids == expected


def test_greedy_translation_clears_the_bleu_floor(shipped: Shipped) -> None:
    texts = [t.text for t in shipped.translator.translate(shipped.sources, beam_size=1,
                                                           max_length=MAX_LENGTH)]
    assert texts == shipped.translator.tokenizer.batch_decode(shipped.greedy_ids,
                                                              skip_special_tokens=True)
    bleu = corpus_scores(texts, [shipped.references])["bleu"]
    print(f"\n{shipped.name}: greedy BLEU {bleu} on {len(texts)} verses")
    assert bleu >= FLOORS[shipped.name]


def test_int8_bundle_translates_like_fp32(shipped: Shipped) -> None:
    """Quantisation moves a few argmaxes, not the translation: the int8 output read against
    the fp32 output scores high, and against the references clears the same floor."""
    int8 = Translator.load(REPO / "models" / shipped.name / "int8")
    decode = shipped.translator.tokenizer.batch_decode
    texts = decode(int8.translate_ids(shipped.source_ids, beam_size=1, max_length=MAX_LENGTH),
                   skip_special_tokens=True)
    fp32 = decode(shipped.greedy_ids, skip_special_tokens=True)
    agreement = corpus_scores(texts, [fp32])["bleu"]
    bleu = corpus_scores(texts, [shipped.references])["bleu"]
    print(f"\n{shipped.name} int8: BLEU {bleu}, {agreement} against the fp32 output")
    assert agreement >= INT8_AGREEMENT and bleu >= FLOORS[shipped.name]
