"""The test split the benchmarks read, with the one-line error when it is missing."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from training.data import Example, read_examples


def load_test_split(path: Path) -> list[Example] | None:
    """The examples in ``path``, or None after printing how to make the file."""
    if not path.is_file():
        print(f"error: {path} is missing; run `make data` or pass --data", file=sys.stderr)
        return None
    return list(read_examples(path))


def sample_verses(path: Path, count: int) -> list[str] | None:
    """Up to ``count`` English (KJV) source verses of the test split in ``path``, a fixed random
    sample (mixed lengths), or None after printing how to make the file."""
    examples = load_test_split(path)
    if examples is None:
        return None
    verses = [e.src for e in examples if e.src_version == "k"]
    return random.Random(0).sample(verses, min(count, len(verses)))
