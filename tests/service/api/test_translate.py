"""``POST /translate`` with a fake engine: results, routing, limits and bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.fakes import FakeLoader, MakeClient, error_of

EN_FR = {"source_lang": "en", "target_lang": "fr"}


def test_list_in_order_with_blank_texts(client: TestClient) -> None:
    response = client.post("/translate", json={"text": ["the cat", "  \n", "", "a dog"], **EN_FR})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "en-fr" and (body["source_lang"], body["target_lang"]) == ("en", "fr")
    texts = [t["text"] for t in body["translations"]]
    assert texts == ["fr:the cat", "  \n", "", "fr:a dog"]  # blank texts come back as sent
    blank = body["translations"][1]
    assert blank["finish_reason"] == "empty" and blank["score"] is None
    first = body["translations"][0]
    assert first["score"] == -0.5 and first["finish_reason"] == "eos"
    assert first["alternatives"] == [{"text": "fr:the cat", "score": -0.5}]
    assert body["usage"] == {"texts": 4, "source_tokens": 6, "target_tokens": 6}


def test_single_string_n_best_and_no_scores(client: TestClient) -> None:
    body = client.post("/translate", json={"text": "hi", "num_hypotheses": 3, "beam_size": 3,
                                           "return_scores": False, **EN_FR}).json()
    (only,) = body["translations"]
    assert [a["text"] for a in only["alternatives"]] == ["fr:hi", "fr:hi#1", "fr:hi#2"]
    assert only["score"] is None and all(a["score"] is None for a in only["alternatives"])


def test_only_blank_texts_never_reach_the_engine(make_client: MakeClient) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    calls_after_warmup = sum(len(e.calls) for e in loader.engines.values())
    body = client.post("/translate", json={"text": ["", " ", "\n2.\n"], **EN_FR}).json()
    assert [t["text"] for t in body["translations"]] == ["", " ", "\n2.\n"]
    assert sum(len(e.calls) for e in loader.engines.values()) == calls_after_warmup


def test_explicit_model_and_defaults(make_client: MakeClient, models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    assert client.post("/translate", json={"text": "x", "model": "en-fr-int8"}).json()[
        "model"] == "en-fr-int8"
    engine = loader.engines[models_dir / "en-fr" / "int8"]
    assert engine.calls[-1][0] == ["x"] and engine.calls[-1][1].beam_size == 4
    preferred = make_client(default_models="en-fr-int8")
    assert preferred.post("/translate", json={"text": "x", **EN_FR}).json()[
        "model"] == "en-fr-int8"
    mismatch = client.post("/translate", json={"text": "x", "model": "en-de", **EN_FR})
    assert error_of(mismatch, 422)["code"] == "model_language_mismatch"


def test_unknown_pair_and_model_list_what_is_served(client: TestClient) -> None:
    error = error_of(client.post("/translate", json={"text": "x", "source_lang": "en",
                                                     "target_lang": "xx"}), 400)
    assert error["code"] == "unsupported_language_pair" and error["field"] == "target_lang"
    assert error["details"] == {"languages": ["de", "fr"]}
    assert "en is translated into: de, fr" in str(error["message"])
    error = error_of(client.post("/translate", json={"text": "x", "source_lang": "xx",
                                                     "target_lang": "fr"}), 400)
    assert error["code"] == "unsupported_language" and error["field"] == "source_lang"
    assert error["details"] == {"languages": ["en"]}
    error = error_of(client.post("/translate", json={"text": "x", "model": "nope"}), 400)
    assert error["code"] == "unknown_model" and error["field"] == "model"
    assert error["details"] == {"models": ["en-de", "en-fr", "en-fr-int8"]}
    error = error_of(client.post("/translate", json={"text": "x"}), 422)
    assert error["code"] == "missing_route"


@pytest.mark.parametrize(("body", "field", "limit"), [
    ({"text": ["a"] * 4}, "text", 3),
    ({"text": ["ok", "x" * 11]}, "text[1]", 10),
    ({"text": ["x" * 10, "y" * 10]}, "text", 15),
    ({"text": "x", "beam_size": 6}, "beam_size", 5),
    ({"text": "x", "num_hypotheses": 3}, "num_hypotheses", 2),
    ({"text": "x", "beam_size": 2, "num_hypotheses": 3}, "num_hypotheses", 2),
    ({"text": "x", "max_length": 101}, "max_length", 100),
])
def test_limits_name_the_field_and_the_limit(make_client: MakeClient, body: dict[str, object],
                                             field: str, limit: int) -> None:
    client = make_client(max_texts=3, max_chars_per_text=10, max_total_chars=15,
                         max_beam_size=5, max_hypotheses=2, max_length_limit=100)
    error = error_of(client.post("/translate", json={**body, **EN_FR}), 422)
    assert (error["field"], error["limit"]) == (field, limit)
    assert str(limit) in str(error["message"])


def test_body_size_limit_is_413(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=200)
    error = error_of(client.post("/translate", json={"text": "x" * 300, **EN_FR}), 413)
    assert error["code"] == "body_too_large" and "200" in str(error["message"])


@pytest.mark.parametrize(("content", "status", "code"), [
    (b'{"text": ', 400, "malformed_json"),
    (b'{"text": "caf\xe9", "source_lang": "en", "target_lang": "fr"}', 400, "invalid_utf8"),
    (b'[1, 2]', 422, "invalid_request"),
    (b'{"text": 5, "source_lang": "en", "target_lang": "fr"}', 422, "invalid_request"),
    (b'{"text": ["a", null], "source_lang": "en", "target_lang": "fr"}', 422, "invalid_request"),
    (b'{"text": "a", "beam_size": "wide", "source_lang": "en", "target_lang": "fr"}', 422,
     "invalid_request"),
    (b'{"text": "a", "bogus": 1, "source_lang": "en", "target_lang": "fr"}', 422,
     "invalid_request"),
    (b'{"text": "a\\u0000b", "source_lang": "en", "target_lang": "fr"}', 422,
     "invalid_characters"),
    (b'{"text": "a\\ud800b", "source_lang": "en", "target_lang": "fr"}', 422,
     "invalid_characters"),
])
def test_bad_input_is_a_clean_4xx(client: TestClient, content: bytes, status: int,
                                  code: str) -> None:
    response = client.post("/translate", content=content,
                           headers={"content-type": "application/json"})
    assert error_of(response, status)["code"] == code


def test_wrong_item_type_names_the_item(client: TestClient) -> None:
    error = error_of(client.post("/translate", json={"text": ["a", 3], **EN_FR}), 422)
    assert error["field"] == "text" and "text[1]" in str(error["message"])


def test_emoji_mixed_scripts_and_tabs_translate(client: TestClient) -> None:
    texts = ["I ❤️ 🐟!", "le chat ест рыбу 猫", "tab\there\r\nnewline"]
    response = client.post("/translate", json={"text": texts, **EN_FR})
    assert response.status_code == 200
    assert [t["text"] for t in response.json()["translations"]] == [
        "fr:I ❤️ 🐟!", "fr:le chat ест рыбу 猫", "fr:tab\there\r\nfr:newline"]  # a line each


def test_engine_failure_is_a_json_500(make_client: MakeClient, models_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loader = FakeLoader()
    client = make_client(loader)

    def explode(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(loader.engines[models_dir / "en-fr"], "translate", explode)
    response = client.post("/translate", json={"text": "x", **EN_FR})
    error = error_of(response, 500)
    assert error["code"] == "engine_error" and "secret" not in response.text


def test_deadline_is_504(make_client: MakeClient, models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    loader.engines[models_dir / "en-fr"].delay = 0.3
    error = error_of(client.post("/translate", json={"text": "x", "timeout": 0.05, **EN_FR}),
                     504)
    assert error["code"] == "deadline_exceeded" and error["limit"] == 0.05


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``condition`` until it holds (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def test_full_queue_is_503_with_retry_after(make_client: MakeClient, models_dir: Path) -> None:
    gate = threading.Event()
    gate.set()  # let the warm-up through
    loader = FakeLoader(release=gate)
    client = make_client(loader, queue_size=1, max_wait_ms=0)
    engine = loader.engines[models_dir / "en-fr"]
    gate.clear()
    warm_calls = len(engine.calls)
    with ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(client.post, "/translate", json={"text": "t0", **EN_FR})]
        wait_until(lambda: len(engine.calls) > warm_calls)  # it runs, held by the gate
        pending += [pool.submit(client.post, "/translate", json={"text": f"t{i}", **EN_FR})
                    for i in range(1, 4)]
        wait_until(lambda: sum(future.done() for future in pending) == 2)  # one waits
        gate.set()
        responses = [future.result(timeout=10) for future in pending]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 503, 503], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert error_of(refused, 503)["code"] == "queue_full"


def test_html_documents_keep_their_markup(make_client: MakeClient, models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    engine = loader.engines[models_dir / "en-fr"]
    before = len(engine.calls)
    body = client.post("/translate", json={
        "text": ["<h1>Title</h1><p>Some <em>text</em></p>", "<hr>"], "format": "html",
        "num_hypotheses": 2, **EN_FR}).json()
    first, second = body["translations"]
    assert first["text"] == "<h1>fr:Title</h1><p>fr:Some <em>fr:text</em></p>"
    assert [a["text"] for a in first["alternatives"]] == [
        first["text"], "<h1>fr:Title#1</h1><p>fr:Some#1 <em>fr:text#1</em></p>"]
    assert first["score"] == -0.5 and first["alternatives"][1]["score"] == -1.5
    assert first["finish_reason"] == "eos" and first["source_tokens"] == 6
    assert second == {**second, "text": "<hr>", "score": None, "finish_reason": "empty"}
    assert [text for texts, _ in engine.calls[before:] for text in texts] == [
        "Title", "Some", "text"]
    bad = client.post("/translate", json={"text": "<![ x", "format": "html", **EN_FR})
    assert error_of(bad, 400)["field"] == "text"
    other = client.post("/translate", json={"text": "x", "format": "pdf", **EN_FR})
    assert error_of(other, 422)["field"] == "format"
