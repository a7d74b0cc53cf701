"""The engine's torch-free tokenizer encodes and decodes exactly like transformers'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from transformers import AutoTokenizer

from inference.tokenizer import FastTokenizer, load_tokenizer

TEXTS = ["the cat eats fish.", "L'Éternel dit: « Où es-tu? »", "", "emoji 🙂 and 東京", "a  b"]


def test_same_ids_and_texts_as_autotokenizer(trained_bundle: Path) -> None:
    ours = load_tokenizer(trained_bundle)
    assert isinstance(ours, FastTokenizer)
    reference = AutoTokenizer.from_pretrained(str(trained_bundle))
    ids = ours(TEXTS)["input_ids"]
    assert ids == reference(TEXTS)["input_ids"]
    assert ours(TEXTS[1])["input_ids"] == ids[1]
    assert ours.batch_decode(ids) == reference.batch_decode(ids, skip_special_tokens=True)


def test_loading_a_bundle_does_not_import_torch(trained_bundle: Path) -> None:
    code = ("import sys; from inference import Translator; "
            f"Translator.load({str(trained_bundle)!r}); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "False", result.stderr[-500:]
