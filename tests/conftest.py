"""Shared fixtures: tiny parallel data, a tiny tokenizer and tiny configs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from training.data import Example, write_examples
from training.data.prepare import prepare_user, write_prepared

pytest_plugins = ["tests.export_fixtures", "tests.checkpoints"]

REPO = Path(__file__).resolve().parents[1]  # the repository root (bundles under models/)

WORDS = {"the": "le", "cat": "chat", "dog": "chien", "eats": "mange", "sees": "voit",
         "bread": "pain", "fish": "poisson", "big": "grand", "small": "petit", "red": "rouge"}


def synthetic_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Deterministic word-by-word English/French pairs."""
    rng = random.Random(seed)
    english = list(WORDS)
    pairs = []
    for _ in range(count):
        words = [rng.choice(english) for _ in range(rng.randint(2, 7))]
        pairs.append((" ".join(words) + ".", " ".join(WORDS[w] for w in words) + "."))
    return pairs


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file a benchmark wrote."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_test_split(path: Path, count: int, seed: int, langs: tuple[str, str] = ("k", "l")
                     ) -> Path:
    """``count`` synthetic pairs written as a test-split JSONL file at ``path``; ``langs``:
    the source and target version codes."""
    write_examples(path, [Example(f"line:{i}", *langs, src, tgt)
                          for i, (src, tgt) in enumerate(synthetic_pairs(count, seed=seed))])
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared data directory (train/dev/test) from 240 synthetic pairs."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    write_prepared(prepare_user(synthetic_pairs(240), "en", "fr"), out, "en", "fr")
    return out


def tiny_overrides(data: Path, out: Path, arch: str = "transformer") -> list[str]:
    """Overrides for a model that trains in seconds on the CPU."""
    return [f"data={data}", f"out={out}", f"tokenizer={out.parent / 'tok'}", f"model.arch={arch}",
            "model.vocab_size=300", "model.d_model=32", "model.layers=1", "model.heads=2",
            "model.ffn_dim=64", "model.hidden_size=16", "model.max_positions=64",
            "max_tokens=400", "dev_pairs=", "dev_size=8", "threads=1", "warmup=10", "lr=0.005"]
