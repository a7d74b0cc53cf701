"""A real browser for the page tests: Debian's chromium driven by playwright, and the app served
by uvicorn on a loopback port.

``chromium_path()`` finds ``chromium``; where it is missing and the user is root (CI), it runs
``apt-get install -y chromium``; otherwise the tests are skipped with one line saying why.
playwright drives that binary (``executable_path``): it never downloads a browser of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

APT_TIMEOUT_S = 900  # a fresh machine downloads chromium and its libraries (about 100 MB)
READY_TIMEOUT_S = 60


def chromium_path() -> str:
    """The ``chromium`` executable, installed with apt when missing and the user is root;
    a skip naming the fix otherwise."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("page tests need chromium: run `apt-get install -y chromium` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=APT_TIMEOUT_S, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


def get_json(url: str, timeout: float = 5) -> tuple[int, object]:
    """Status and JSON body of a GET (an error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def post_json(url: str, body: object, timeout: float = 60) -> Any:
    """The JSON answer of a POST; for an event stream, the data of its last event."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    if response.headers.get_content_type() == "text/event-stream":
        data = [line[5:] for line in text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return json.loads(text)


def wait_ready(base_url: str) -> None:
    """Poll ``/health/ready`` until 200 (the lifespan loads the models in the background)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    status, body = get_json(f"{base_url}/health/ready")
    while status != 200:
        assert time.monotonic() < deadline, f"not ready: {body}"
        time.sleep(0.02)
        status, body = get_json(f"{base_url}/health/ready")


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn in a thread on a loopback port the system picks; its base URL
    once every model is ready. The socket listens before the thread starts, so the first
    request waits in its backlog rather than racing the start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_ready(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
