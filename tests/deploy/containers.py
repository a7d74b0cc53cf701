"""Helpers of the container tests: the container engine, ports, HTTP.

The engine is the command in ``CONTAINER_ENGINE`` (``docker``, ``podman`` or a wrapper such as
``../shared/container/podman.sh``), else ``docker`` or ``podman`` from the PATH. Without a
usable one the tests skip with one line saying why, or fail when ``CONTAINER_TESTS_REQUIRED=1``
(``.ci/run`` sets it). ``CONTAINER_PREPARE`` names a script run once before the engine is
checked (the project's machines install podman and build ``debian:bookworm-slim`` with it).
Containers run on the host's network, so a container's server listens directly on a free
loopback port chosen by the test (``TRANSLATE_PORT``). All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_VARIABLE = "CONTAINER_ENGINE"
REQUIRED_VARIABLE = "CONTAINER_TESTS_REQUIRED"
PREPARE_VARIABLE = "CONTAINER_PREPARE"


def engine_candidates() -> list[str]:
    """``CONTAINER_ENGINE`` alone when set, else docker and podman as found on the PATH."""
    named = os.environ.get(ENGINE_VARIABLE, "").strip()
    if named:
        return [named]
    return [found for name in ("docker", "podman") if (found := shutil.which(name))]


def engine_problem(engine: str | None) -> str | None:
    """Why ``engine`` cannot run containers, in one line; ``None`` when it can."""
    if engine is None:
        return (f"no container engine: set {ENGINE_VARIABLE} or put docker or podman on the "
                "PATH")
    try:
        done = subprocess.run([engine, "info"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"container engine {engine} unusable: {err}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"container engine {engine} unusable ('{engine} info' failed: {last[0]})"
    return None


@functools.cache
def _prepared_engine() -> tuple[str | None, str | None]:
    """(engine, problem), checked once per test run after ``CONTAINER_PREPARE`` (which may
    install the engine) has run."""
    prepare = os.environ.get(PREPARE_VARIABLE, "").strip()
    if prepare:
        done = subprocess.run([prepare], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"{prepare} failed: {(done.stderr or done.stdout).strip()[-300:]}"
    problems = {engine: engine_problem(engine) for engine in engine_candidates()}
    usable = [engine for engine, problem in problems.items() if problem is None]
    if usable:
        return usable[0], None
    return None, next(iter(problems.values()), None) or engine_problem(None)


def is_podman(engine: str) -> bool:
    """Whether ``engine`` is podman or a wrapper of it (its build needs ``--format docker``)."""
    return "podman" in Path(engine).name


def require_engine() -> str:
    """The usable engine; skips (or fails, with ``CONTAINER_TESTS_REQUIRED=1``) without one."""
    engine, problem = _prepared_engine()
    if problem is not None or engine is None:
        message = problem or "no container engine"
        if os.environ.get(REQUIRED_VARIABLE) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return engine


def container_cli(*args: str, check: bool = True, timeout: float = 900
           ) -> subprocess.CompletedProcess[str]:
    """``ENGINE ARGS``; with ``check`` a failure fails the test with the engine's output."""
    engine = require_engine()
    done = subprocess.run([engine, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"{engine} {' '.join(args)} exited {done.returncode}:\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 60
         ) -> tuple[int, Any]:
    """Status and JSON body (``None`` when not JSON) of one GET, or POST of ``body``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_until_ready(base: str, alive: Callable[[], bool], describe: Callable[[], str],
                     timeout: float = 300) -> float:
    """Poll ``base/health/ready`` until 200; seconds waited. Fails early if ``alive()`` turns
    false, with ``describe()`` (e.g. the container's logs) in the message."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if http(f"{base}/health/ready", timeout=5)[0] == 200:
                return time.monotonic() - started
        except OSError:  # not listening yet
            pass
        if not alive():
            pytest.fail(f"the server stopped before it was ready:\n{describe()}")
        time.sleep(0.5)
    pytest.fail(f"not ready after {timeout:.0f} s:\n{describe()}")


@dataclass
class Container:
    """A detached container started by :func:`run_server`."""

    name: str
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        """``inspect``'s State (Status, Running, ExitCode...)."""
        out = container_cli("inspect", "--format", "{{json .State}}", self.name).stdout
        return dict(json.loads(out))

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def logs(self) -> str:
        done = container_cli("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def wait_ready(self, timeout: float = 300) -> float:
        return wait_until_ready(self.base, self.running, self.logs, timeout)

    def remove(self) -> None:
        container_cli("rm", "-f", "-t", "0", self.name, check=False)


def run_server(image: str, *, name: str, env: dict[str, str] | None = None,
               volumes: tuple[str, ...] = (), read_only: bool = True) -> Container:
    """Start ``image`` detached on a free loopback port (only 127.0.0.1 is bound)."""
    port = free_port()
    settings = {"TRANSLATE_HOST": "127.0.0.1", "TRANSLATE_PORT": str(port),
                "TRANSLATE_THREADS": "1", **(env or {})}
    engine = require_engine()
    # docker and podman themselves need the host's network asked for; a wrapper (such as
    # ../shared/container/podman.sh) sets it up itself and refuses a second network
    network = ["--network=host"] if Path(engine).name in ("docker", "podman") else []
    args = ["run", "-d", *network, "--name", name]
    if read_only:  # as with readOnlyRootFilesystem in Kubernetes; /tmp stays writable
        args.append("--read-only")
    for key, value in settings.items():
        args += ["-e", f"{key}={value}"]
    for volume in volumes:
        args += ["-v", volume]
    container_cli(*args, image)
    return Container(name, port)
