"""The pairs a bundle serves and the language tokens that pick one (``inference/languages.py``),
on hand-made manifests; the real M2M100 and NLLB bundles are in ``tests/training/export`` and
``tests/service/api/test_language_pairs.py``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from inference.languages import LanguageError, Languages

TOKENS = {"de": 7, "en": 5, "fr": 6}


def manifest(**metadata: Any) -> Any:
    """What :meth:`Languages.of` reads of a manifest: exported for en -> fr."""
    return SimpleNamespace(source_lang="en", target_lang="fr", metadata=metadata)


def test_a_one_pair_bundle_serves_its_pair_only() -> None:
    languages = Languages.of(manifest(target_prefix=[9]))
    assert not languages.multilingual and list(languages.pairs()) == [("en", "fr")]
    assert languages.check(None) == ("en", "fr") and languages.target_prefix("fr") == [9]
    assert languages.source_ids([1, 2, 3], "en") == [1, 2, 3]
    with pytest.raises(LanguageError, match="target language 'de' is not served; target "
                                            "languages: fr") as refused:
        languages.check(("en", "de"))
    assert (refused.value.side, refused.value.known) == ("target", ["fr"])


def test_a_multilingual_bundle_serves_any_two_of_its_languages() -> None:
    languages = Languages.of(manifest(language_tokens=TOKENS, target_prefix=[6]))
    assert sorted(languages.pairs()) == [("de", "en"), ("de", "fr"), ("en", "de"),
                                         ("en", "fr"), ("fr", "de"), ("fr", "en")]
    assert languages.targets_of("de") == ["en", "fr"] and languages.targets_of("xx") == []
    assert languages.target_prefix("de") == [7]
    assert languages.check(("fr", "de")) == ("fr", "de")
    with pytest.raises(LanguageError, match="source language 'xx' is not served; source "
                                            "languages: de, en, fr"):
        languages.check(("xx", "de"))
    with pytest.raises(LanguageError, match="target languages: de, fr"):
        languages.check(("en", "en"))


def test_a_multi_target_bundle_serves_its_source_into_each_target() -> None:
    languages = Languages.of(manifest(source_prefix=[6],
                                      target_tokens_in_source={"es": 4, "fr": 6, "en": 3}))
    assert languages.multilingual and sorted(languages.pairs()) == [("en", "es"), ("en", "fr")]
    assert languages.source_prefix("es") == [4] and languages.source_prefix("fr") == [6]
    assert languages.target_prefix("es") == [] and languages.source_ids([1, 2], "en") == [1, 2]
    with pytest.raises(LanguageError, match="source languages: en"):
        languages.check(("es", "fr"))
    with pytest.raises(LanguageError, match="target languages: es, fr"):
        languages.check(("en", "de"))


def test_a_bundle_recording_only_its_targets_token_serves_that_target() -> None:
    languages = Languages.of(manifest(source_prefix=[6]))
    assert not languages.multilingual and list(languages.pairs()) == [("en", "fr")]
    assert languages.source_prefix("fr") == [6]


@pytest.mark.parametrize(("index", "ids", "swapped"), [
    (0, [5, 11, 12, 2], [7, 11, 12, 2]),  # M2M100, NLLB: the language token leads
    (-1, [11, 12, 2, 5], [11, 12, 2, 7]),  # NLLB's legacy layout: it ends the source
])
def test_the_source_language_token_is_replaced_where_the_tokenizer_puts_it(
        index: int, ids: list[int], swapped: list[int]) -> None:
    languages = Languages.of(manifest(language_tokens=TOKENS, source_language_index=index))
    assert languages.source_ids(ids, "de") == swapped
    assert languages.source_ids(ids, "en") == ids
