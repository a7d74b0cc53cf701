"""Overload: bursts of ten times the queue capacity at once against a slow scripted engine.

Every request gets a 200 or a 503 ``queue_full`` with ``Retry-After`` (no 500, no hang, no
answer later than the deadline); resident memory does not grow from burst to burst; and
afterwards the server answers normally.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi.testclient import TestClient

from tests.reliability.conftest import StartClient
from tests.service.api.fakes import FakeLoader

QUEUE_SIZE = 8
BURST = 10 * QUEUE_SIZE
DEADLINE_S = 5.0
ROUNDS = 3
TEXT = "the quick brown fox jumps over the lazy dog. " * 40  # 1,800 characters
EN_FR = {"source_lang": "en", "target_lang": "fr"}


@dataclass(frozen=True)
class Answer:
    """What one request of the burst got."""

    status: int
    seconds: float
    retry_after: str | None
    code: str | None


def rss_mb() -> float:
    """Resident memory of this process (the app runs in it), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def one_request(client: TestClient, start: threading.Barrier, index: int) -> Answer:
    """Wait for the others, then send one translation and time it."""
    start.wait()
    began = time.monotonic()
    response = client.post("/translate", json={"text": [f"{index} {TEXT}"], **EN_FR})
    seconds = time.monotonic() - began
    code = response.json()["error"]["code"] if response.status_code != 200 else None
    return Answer(response.status_code, seconds, response.headers.get("retry-after"), code)


def burst(client: TestClient) -> list[Answer]:
    """``BURST`` requests released at the same instant."""
    start = threading.Barrier(BURST)
    with ThreadPoolExecutor(BURST) as pool:
        futures = [pool.submit(one_request, client, start, i) for i in range(BURST)]
        return [future.result(timeout=DEADLINE_S * 4) for future in futures]


def check_burst(answers: list[Answer]) -> Counter[int]:
    """Only 200s and 503s with Retry-After; nothing past the deadline; both kinds seen."""
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= QUEUE_SIZE and statuses[503] > 0, statuses
    for answer in answers:
        assert answer.seconds < DEADLINE_S, answer
        if answer.status == 503:
            assert (answer.code, answer.retry_after) == ("queue_full", "1"), answer
    return statuses


def test_bursts_of_ten_times_the_queue(start_client: StartClient) -> None:
    """Three bursts: clean answers each time, flat memory, then normal service."""
    client = start_client(FakeLoader(delay=0.05), queue_size=QUEUE_SIZE, max_wait_ms=2,
                          request_timeout_s=DEADLINE_S, max_batch_tokens=64)
    check_burst(burst(client))  # the first burst warms up threads and allocator pools
    before = rss_mb()
    seen = sum((check_burst(burst(client)) for _ in range(ROUNDS)), Counter[int]())
    after = rss_mb()
    print(f"\noverload: {ROUNDS} bursts of {BURST} (queue {QUEUE_SIZE}): {dict(seen)}; "
          f"RSS {before:.1f} -> {after:.1f} MiB")
    assert after - before < 20, (before, after)
    normal = client.post("/translate", json={"text": ["a", "b"], **EN_FR})
    assert normal.status_code == 200
    assert [t["text"] for t in normal.json()["translations"]] == ["fr:a", "fr:b"]
    assert client.get("/health/ready").status_code == 200
