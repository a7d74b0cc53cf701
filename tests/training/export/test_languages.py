"""Checkpoint language codes reduced to the API's codes."""

from __future__ import annotations

import pytest

from training.errors import UserError
from training.export.languages import (
    api_code,
    checkpoint_code,
    opus_target_tokens,
    served_codes,
    source_prefix,
)


@pytest.mark.parametrize(("code", "expected"), [
    ("fr", "fr"), ("fra", "fr"), ("eng", "en"), ("fra_Latn", "fr"), ("zho_Hans", "zh"),
    ("pt-BR", "pt"), ("nob", "nb"), ("roa", "roa"), ("und", "und"), ("ROMANCE", "ROMANCE"),
    ("arb_Arab", "ar"), ("swh_Latn", "sw"), ("tl", "tl"), ("acm_Arab", "acm")])
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


def test_a_language_is_served_under_one_code_and_found_by_any() -> None:
    codes = ["eng_Latn", "zho_Hans", "zho_Hant", "pes_Arab", "prs_Arab"]
    assert served_codes(codes) == {"eng_Latn": "en", "zho_Hans": "zh", "zho_Hant": "zho_hant",
                                   "pes_Arab": "fa", "prs_Arab": "prs_arab"}
    ids = {code: index for index, code in enumerate(codes)}
    assert [checkpoint_code(ids, wanted, "--tgt-lang") for wanted in (
        "zho_Hant", "zho_hant", "zh", "zho", "fas", "prs_Arab")] == [
        "zho_Hant", "zho_Hant", "zho_Hans", "zho_Hans", "pes_Arab", "prs_Arab"]
    with pytest.raises(UserError, match="pass --tgt-lang with one of: eng_Latn, pes_Arab"):
        checkpoint_code(ids, "tlh", "--tgt-lang")
