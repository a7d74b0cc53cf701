"""Checkpoint language codes reduced to the API's codes."""

from __future__ import annotations

import pytest

from training.errors import UserError
from training.export.languages import api_code, opus_target_tokens, source_prefix


@pytest.mark.parametrize(("code", "expected"), [
    ("fr", "fr"), ("fra", "fr"), ("eng", "en"), ("fra_Latn", "fr"), ("zho_Hans", "zh"),
    ("pt-BR", "pt"), ("nob", "nb"), ("roa", "roa"), ("und", "und"), ("ROMANCE", "ROMANCE")])
def test_api_code(code: str, expected: str) -> None:
    assert api_code(code) == expected


def test_opus_target_tokens_and_prefix() -> None:
    vocab = {"</s>": 0, "<unk>": 1, ">>fra<<": 2, ">>spa<<": 3, ">>por<<": 4, "▁the": 5}
    tokens = opus_target_tokens(vocab)
    assert tokens == {"fr": 2, "es": 3, "pt": 4}
    assert source_prefix(tokens, "es") == [3]
    assert source_prefix({}, "de") == []
    with pytest.raises(UserError, match="one of: es, fr, pt"):
        source_prefix(tokens, "de")
