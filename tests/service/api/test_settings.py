"""``TRANSLATE_*`` variables: a name that is no setting stops the start with a suggestion."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from service.__main__ import main
from service.api.settings import Settings


def test_a_misspelled_variable_is_refused_with_the_right_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSLATE_MAX_BATCH_TOKEN", "512")
    with pytest.raises(ValidationError, match=re.escape(
            "TRANSLATE_MAX_BATCH_TOKEN is not a setting; did you mean "
            "TRANSLATE_MAX_BATCH_TOKENS?")):
        Settings()


@pytest.mark.parametrize("removed", ["TRANSLATE_OVERLAP_ENCODER", "TRANSLATE_WAIT_POLICY",
                                     "TRANSLATE_IO_BINDING", "TRANSLATE_DECODER_SPINNING"])
def test_experiment_switches_are_not_settings(monkeypatch: pytest.MonkeyPatch,
                                              removed: str) -> None:
    monkeypatch.setenv(removed, "true")
    with pytest.raises(ValidationError, match=f"{removed} is not a setting"):
        Settings()


def test_known_variables_of_any_case_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSLATE_MAX_BATCH_TOKENS", "512")
    monkeypatch.setenv("translate_queue_size", "9")
    settings = Settings()
    assert (settings.max_batch_tokens, settings.queue_size) == (512, 9)


def test_the_server_names_the_fix_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRANSLATE_QUEUE_SIZ", "9")
    assert main(["--port", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["error: TRANSLATE_QUEUE_SIZ is not a setting; did you mean "
                     "TRANSLATE_QUEUE_SIZE? (every setting: docs/service.md)"]
