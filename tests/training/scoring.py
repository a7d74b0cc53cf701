"""BLEU of a bundle on a prepared test split, computed outside the evaluation code."""

from __future__ import annotations

from pathlib import Path

from inference import Translator
from training.data import read_examples
from training.metrics import corpus_scores


def split_bleu(bundle: Path, data: Path, *, beam: int, max_length: int | None = None,
               src: str = "en", ref: str = "fr") -> float:
    """Single-reference BLEU of ``bundle``'s ``Translator.translate`` on ``data``'s test
    split (``src`` sources, ``ref`` references)."""
    pairs = [(e.src, e.tgt) for e in read_examples(data / "test.jsonl")
             if (e.src_version, e.tgt_version) == (src, ref)]
    assert pairs, f"no {src}->{ref} pairs in {data}"
    translated = Translator.load(bundle).translate([s for s, _ in pairs], beam_size=beam,
                                                 max_length=max_length)
    return float(corpus_scores([t.text for t in translated], [[t for _, t in pairs]])["bleu"])
