"""Helpers of the container tests: podman through ``../shared/container``, ports, HTTP.

Podman runs every container on the host's network here, so a container's server listens
directly on a free loopback port chosen by the test (``TRANSLATE_PORT``). All traffic goes
to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
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
# The podman wrappers of this project's machines; another directory with the same two
# scripts can be given in SEQ2SEQ_CONTAINER_TOOLS.
TOOLS = Path(os.environ.get("SEQ2SEQ_CONTAINER_TOOLS", ROOT.parent / "shared" / "container"))
PODMAN = TOOLS / "podman.sh"
BASE_IMAGE = TOOLS / "base-image.sh"


def require_podman() -> None:
    """Fail (never skip) when podman is not usable: CI must run these tests."""
    for script in (PODMAN, BASE_IMAGE):
        if not os.access(script, os.X_OK):
            pytest.fail(f"container tests need {script} (set SEQ2SEQ_CONTAINER_TOOLS to the "
                        "directory holding podman.sh and base-image.sh)")
    done = subprocess.run([str(BASE_IMAGE)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"{BASE_IMAGE} failed (podman unusable?):\n{done.stdout}{done.stderr}")


def podman(*args: str, check: bool = True, timeout: float = 900
           ) -> subprocess.CompletedProcess[str]:
    """``podman.sh ARGS``; with ``check`` a failure fails the test with podman's output."""
    done = subprocess.run([str(PODMAN), *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {done.returncode}:\n"
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
        """``podman inspect``'s State (Status, Running, ExitCode...)."""
        out = podman("inspect", "--format", "{{json .State}}", self.name).stdout
        return dict(json.loads(out))

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def wait_ready(self, timeout: float = 300) -> float:
        return wait_until_ready(self.base, self.running, self.logs, timeout)

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


def run_server(image: str, *, name: str, env: dict[str, str] | None = None,
               volumes: tuple[str, ...] = (), read_only: bool = True) -> Container:
    """Start ``image`` detached on a free loopback port (only 127.0.0.1 is bound)."""
    port = free_port()
    settings = {"TRANSLATE_HOST": "127.0.0.1", "TRANSLATE_PORT": str(port),
                "TRANSLATE_THREADS": "1", **(env or {})}
    args = ["run", "-d", "--name", name]
    if read_only:  # as with readOnlyRootFilesystem in Kubernetes; /tmp stays writable
        args.append("--read-only")
    for key, value in settings.items():
        args += ["-e", f"{key}={value}"]
    for volume in volumes:
        args += ["-v", volume]
    podman(*args, image)
    return Container(name, port)
