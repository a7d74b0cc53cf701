"""Shutdown under load: SIGTERM to a real server process while requests are in flight.

Every request in flight when the signal arrives completes: 200 with all its translations, none
lost (a connection error), cut off (a partial body) or refused; requests sent after the signal
get 503 ``shutting_down`` with ``Retry-After``; the process exits 0 within the drain timeout.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.bundles import add_bundle
from tests.service.api.test_real_model import log_tail, start_service, wait_for_ready

IN_FLIGHT = 12
TEXTS = 16
DRAIN_TIMEOUT_S = 20.0
LATE = 3
SENTENCE = "the big dog sees the red cat and the small fish."


@dataclass(frozen=True)
class Outcome:
    """What one client saw: a status and a complete JSON body, or the exception raised."""

    status: int | None
    body: dict[str, object] | None
    retry_after: str | None = None
    failure: str | None = None


def post(port: int, body: dict[str, object]) -> Outcome:
    """One POST /translate over its own connection; any transport error is recorded."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/translate", json.dumps(body),
                           {"Content-Type": "application/json"})
        reply = connection.getresponse()
        raw = reply.read()  # IncompleteRead if the body is cut off
        return Outcome(reply.status, json.loads(raw), reply.getheader("retry-after"))
    except (OSError, http.client.HTTPException, ValueError) as err:
        return Outcome(None, None, failure=f"{type(err).__name__}: {err}")
    finally:
        connection.close()


def translate_load(port: int) -> tuple[float, float]:
    """The server's ``/translate`` requests in flight and finished, from ``/metrics``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    match = re.search(r"^translate_http_in_flight (\S+)$", text, re.MULTILINE)
    assert match, text[:500]
    finished = re.findall(r'^translate_http_requests_total\{route="/translate",[^}]*\} (\S+)$',
                          text, re.MULTILINE)
    return float(match.group(1)), sum(float(value) for value in finished)


def wait_arrived(port: int, count: int, timeout: float = 30) -> None:
    """Until ``count`` requests reached the server and some are still being served (the first
    may finish before the last arrives on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        serving, finished = translate_load(port)
        if serving + finished >= count and serving >= 1:
            return
        assert time.monotonic() < deadline, "the requests never got in flight"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def shutdown_models(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained fp32 bundle, labelled en->fr."""
    root = tmp_path_factory.mktemp("shutdown")
    add_bundle(trained_bundle, root, "tiny-en-fr")
    return root


def start_server(models: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m service``: one thread, small batches, a long drain timeout; and its port."""
    return start_service(models, {
        "TRANSLATE_THREADS": "1", "TRANSLATE_MAX_BATCH_TOKENS": "128",
        "TRANSLATE_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S), "TRANSLATE_MAX_WAIT_MS": "1"}, log)


def check_in_flight(outcomes: list[Outcome]) -> None:
    """Each in-flight request: 200 with every translation (a drain finishes accepted work)."""
    for outcome in outcomes:
        assert outcome.failure is None, outcome.failure
        assert outcome.status == 200 and outcome.body is not None, outcome
        assert len(outcome.body["translations"]) == TEXTS  # type: ignore[arg-type]


def test_sigterm_drains_in_flight_requests(shutdown_models: Path, tmp_path: Path) -> None:
    """SIGTERM with ``IN_FLIGHT`` requests running: all answered, then exit 0 in time."""
    log = tmp_path / "server.log"
    process, port = start_server(shutdown_models, log)
    work = {"text": [f"{SENTENCE} {i}" for i in range(TEXTS)], "source_lang": "en",
            "target_lang": "fr", "beam_size": 4, "max_length": 48}
    try:
        wait_for_ready(f"http://127.0.0.1:{port}", process, log)
        with ThreadPoolExecutor(IN_FLIGHT + LATE) as pool:
            running: list[Future[Outcome]] = [pool.submit(post, port, work)
                                              for _ in range(IN_FLIGHT)]
            wait_arrived(port, IN_FLIGHT)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            late = [post(port, {"text": "late", "source_lang": "en", "target_lang": "fr"})
                    for _ in range(LATE)]
            outcomes = [future.result(timeout=DRAIN_TIMEOUT_S + 10) for future in running]
        process.wait(timeout=DRAIN_TIMEOUT_S + 10)
        drain_s = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    check_in_flight(outcomes)
    assert [(o.status, o.retry_after) for o in late] == [(503, "5")] * LATE, late
    assert all(o.body and o.body["error"]["code"] == "shutting_down"  # type: ignore[index]
               for o in late)
    print(f"\nshutdown: {IN_FLIGHT} in flight -> 200; {LATE} late -> 503; "
          f"exit {process.returncode} after {drain_s:.2f} s")
    assert process.returncode == 0, log_tail(log)
    assert drain_s < DRAIN_TIMEOUT_S
    logged = log.read_text()
    assert '"message": "stopped"' in logged and '"in_flight": 0' in logged, log_tail(log)
