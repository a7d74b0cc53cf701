"""``POST /translate/stream`` over the real tiny exported bundle: the streamed sentences are
exactly what ``/translate`` answers for the same sentences with the same options, they
concatenate to what it answers for the whole text, and a client that goes away mid-decode frees
its rows of the default (iteration-level) decode loop."""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.engine import Admission, Outcome
from service.api.iteration_level import IterationLevel
from service.api.settings import Settings
from tests.service.api.fakes import copy_bundle, wait_ready
from tests.service.api.test_stream import _post_then_disconnect, parse_sse

TEXT = "the cat eats fish. the big dog sees the red cat.\n\nsmall fish.\n"
SENTENCES = ["the cat eats fish.", "the big dog sees the red cat.", "small fish."]
SEPARATORS = [" ", "\n\n", "\n"]  # what follows each sentence in TEXT
EN_FR = {"source_lang": "en", "target_lang": "fr"}


@pytest.fixture(scope="module")
def client(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A started app over the trained bundle, labelled en->fr."""
    root = tmp_path_factory.mktemp("streamed")
    bundle = copy_bundle(trained_bundle, root, "tiny-en-fr")
    raw = json.loads((bundle / "model.json").read_text())
    raw.update(source_lang="en", target_lang="fr")
    (bundle / "model.json").write_text(json.dumps(raw))
    with TestClient(create_app(Settings(models_dir=root, threads=1, max_wait_ms=20))) as started:
        wait_ready(started)
        yield started


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"beam_size": 1}, {"beam_size": 3, "num_hypotheses": 2}])
def test_stream_matches_translate(client: TestClient, options: dict[str, Any]) -> None:
    response = client.post("/translate/stream", json={"text": TEXT, **EN_FR, **options})
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["start", "sentence", "sentence", "sentence", "done"]
    streamed = [data for name, data in events if name == "sentence"]
    reference = client.post("/translate", json={"text": SENTENCES, **EN_FR,
                                                **options}).json()["translations"]
    pairs = list(zip(reference, SEPARATORS, strict=True))
    assert [s["text"] for s in streamed] == [r["text"] + sep for r, sep in pairs]
    assert all(r["text"] for r in reference)
    for mine, (theirs, sep) in zip(streamed, pairs, strict=True):
        assert math.isclose(mine["score"], theirs["score"], abs_tol=1e-4)
        assert [a["text"] for a in mine["alternatives"]] == [
            a["text"] + sep for a in theirs["alternatives"]]
        assert mine["target_tokens"] == theirs["target_tokens"]
    whole = client.post("/translate", json={"text": TEXT, **EN_FR, **options}).json()
    assert events[-1][1]["translations"] == [whole["translations"][0]["text"]]
    assert "".join(s["text"] for s in streamed) == whole["translations"][0]["text"]


def test_disconnect_frees_the_rows_of_the_running_sentences(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    batcher = client.app.state.service.registry.entries["tiny-en-fr"].batcher  # type: ignore[attr-defined]
    strategy = batcher.strategy
    assert isinstance(strategy, IterationLevel)  # the default
    loop = strategy.loop
    stepped, release = threading.Event(), threading.Event()
    cancelled: list[int] = []
    step_and_admit, cancel = loop.step_and_admit, loop.cancel

    def held(admissions: list[Admission], encoder: Executor) -> list[Outcome]:
        outcomes = step_and_admit(admissions, encoder)
        if loop.running and not release.is_set():  # hold after the first step
            stepped.set()
            release.wait(30)
        return outcomes

    def recorded(key: int) -> None:
        cancelled.append(key)
        cancel(key)

    monkeypatch.setattr(loop, "step_and_admit", held)
    monkeypatch.setattr(loop, "cancel", recorded)
    long_text = " ".join(f"the big dog sees the red cat number {i}." for i in range(3))
    try:
        chunks = client.portal.call(  # type: ignore[union-attr]
            _post_then_disconnect, client.app,
            {"text": long_text, "beam_size": 3, "max_length": 60, **EN_FR}, "2.4", stepped)
    finally:
        release.set()
    assert [name for name, _ in parse_sse(b"".join(chunks).decode())] == ["start"]
    # oldest first: this request's step comes after the worker has read the drops
    follow_up = client.post("/translate", json={"text": "small fish.", **EN_FR})
    assert follow_up.status_code == 200
    assert len(cancelled) == 3  # every sentence left the loop mid-decode
    assert loop.running == 0 and batcher.depth == 0
