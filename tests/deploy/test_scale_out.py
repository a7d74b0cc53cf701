"""Scale-out: two replicas of the image behind nginx; one dies during a load of requests and
no client request fails, because nginx retries the failed attempts on the other replica."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import pytest

from tests.deploy.balancer import LogLine, nginx_binary, read_access_log, running_nginx
from tests.deploy.conftest import Image
from tests.deploy.containers import Container, container_cli, free_port, http, run_server

pytestmark = pytest.mark.container

REQUESTS, CONCURRENCY, KILL_AFTER = 200, 8, 60
BODY = b'{"text": "the cat eats fish.", "source_lang": "en", "target_lang": "fr", "beam_size": 1}'


@pytest.fixture
def replicas(cpu_image: Image) -> Iterator[list[Container]]:
    """Two ready replicas of the image (one thread each, a short drain)."""
    started = []
    try:
        for index in range(2):
            started.append(run_server(
                cpu_image.tag, name=f"s2s-replica{index}-{os.getpid()}",
                env={"TRANSLATE_DRAIN_TIMEOUT_S": "5"}))
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.remove()


def post(url: str) -> int:
    """Status of one POST /translate through the balancer (-1: no HTTP answer at all, -2: an
    answer cut off after its header)."""
    request = urllib.request.Request(url, data=BODY,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except HTTPException:
        return -2
    except OSError:
        return -1


def load(url: str, stop_one: Callable[[], object]) -> list[int]:
    """REQUESTS posts, CONCURRENCY at a time; ``stop_one()`` after KILL_AFTER answers."""
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(post, url) for _ in range(REQUESTS)]
        for answered, _ in enumerate(as_completed(futures), start=1):
            if answered == KILL_AFTER:
                stop_one()
        return [future.result() for future in futures]


def translate_200s(replica: Container) -> int:
    """``translate_http_requests_total{route="/translate",status="200"}`` of a replica."""
    status, text = http(f"{replica.base}/metrics")
    assert status == 200
    found = re.search(r'translate_http_requests_total\{route="/translate",status="200"\} '
                      r"([0-9.e+]+)", str(text))
    return int(float(found.group(1))) if found else 0


@dataclass(frozen=True)
class Outcome:
    """What the load measured: client statuses and nginx's view of every request."""

    statuses: list[int]
    log: list[LogLine]

    def served_by(self) -> Counter[str]:
        return Counter(line.upstreams[-1] for line in self.log if line.upstreams)

    def retried(self) -> int:
        return sum(len(line.upstreams) > 1 for line in self.log)

    def failed(self) -> int:
        return sum(status != 200 for status in self.statuses)

    def summary(self, signal: str) -> str:
        return (f"scale-out, SIG{signal} to one of 2 replicas after {KILL_AFTER} answers: "
                f"{len(self.statuses)} requests ({CONCURRENCY} concurrent), "
                f"{self.retried()} retried by nginx, {self.failed()} failed; answered by "
                f"{dict(self.served_by())}")


@pytest.mark.parametrize("signal", ["KILL", "TERM"])
def test_no_request_fails_when_a_replica_dies(replicas: list[Container], signal: str,
                                              tmp_path: Path) -> None:
    victim, survivor = replicas
    port = free_port()
    with running_nginx(nginx_binary(), tmp_path, [r.port for r in replicas], port) as log:
        statuses = load(f"http://127.0.0.1:{port}/translate",
                        lambda: container_cli("kill", "-s", signal, victim.name))
    outcome = Outcome(statuses, read_access_log(log))
    print(outcome.summary(signal))
    assert outcome.failed() == 0, (outcome.summary(signal), Counter(statuses))
    assert len(outcome.log) == REQUESTS
    served = outcome.served_by()
    assert served[f"127.0.0.1:{victim.port}"] > 0, "the load never reached the victim"
    assert served[f"127.0.0.1:{survivor.port}"] == translate_200s(survivor)
    if signal == "TERM":  # a drained replica still exits cleanly
        container_cli("wait", victim.name, timeout=60)
        assert victim.state()["ExitCode"] == 0, victim.logs()
    else:
        assert not victim.running()
