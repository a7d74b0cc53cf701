"""The on-disk example format: one JSON object per line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Example:
    """One aligned sentence pair with its provenance."""

    key: str  # "book:chapter:verse" for the Bible, "line:N" for user data
    src_version: str
    tgt_version: str
    src: str
    tgt: str


def write_examples(path: Path, examples: Iterable[Example]) -> int:
    """Write examples as JSONL; returns how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(asdict(example), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_examples(path: Path) -> Iterator[Example]:
    """Read a JSONL file written by :func:`write_examples`."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield Example(**json.loads(line))
