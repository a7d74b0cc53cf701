"""Tokenizer training, saving for AutoTokenizer, and exact round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from training.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, save_tokenizer, train_tokenizer

FRENCH = [
    "L'Éternel dit à Moïse: Où es-tu? « Je suis là », répondit-il !",
    "Ça, c'est l'œuvre de Noé ; garçon, où êtes-vous ?",
    "In the beginning God created the heaven and the earth.",
    "Au commencement, Dieu créa les cieux et la terre.",
]


@pytest.mark.parametrize("algorithm", ["bpe", "unigram"])
def test_saved_tokenizer_loads_with_autotokenizer_and_round_trips(
    tmp_path: Path, algorithm: str
) -> None:
    tokenizer = train_tokenizer(FRENCH * 20, vocab_size=300, algorithm=algorithm)  # type: ignore[arg-type]
    save_tokenizer(tokenizer, tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id,
            loaded.bos_token_id) == (PAD_ID, EOS_ID, UNK_ID, BOS_ID)
    for text in FRENCH:
        ids = loaded(text)["input_ids"]
        assert ids[-1] == EOS_ID
        assert loaded.decode(ids, skip_special_tokens=True) == text


def test_byte_level_bpe_round_trips_unseen_characters(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(FRENCH * 20, vocab_size=300)
    for text in ["Zürich ñandú 東京 🙂", "  double  spaces ", "tab\there"]:
        ids = tokenizer(text)["input_ids"]
        assert UNK_ID not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
