"""nginx in front of replicas for the scale-out test, with the shipped proxy settings.

``deploy/nginx/translate.conf`` is rendered with loopback upstreams and a loopback listen
address and included in a minimal main configuration in a temporary directory.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.containers import ROOT

SITE = ROOT / "deploy" / "nginx" / "translate.conf"
ENSURE = ROOT / "deploy" / "nginx" / "ensure-nginx.sh"
MAIN = """daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    include {dir}/site.conf;
}}
"""


def nginx_binary() -> str:
    """Debian's nginx, installed by ``deploy/nginx/ensure-nginx.sh`` when missing."""
    done = subprocess.run([str(ENSURE)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"nginx is not usable ({ENSURE}):\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def substitute(pattern: str, replace: str | Callable[[re.Match[str]], str], text: str) -> str:
    """``re.subn`` that fails the test unless the shipped config has exactly one match."""
    result, count = re.subn(pattern, replace, text, flags=re.MULTILINE)
    if count != 1:
        pytest.fail(f"{SITE} no longer has exactly one line matching {pattern!r}")
    return result


def render_site(upstream_ports: list[int], port: int, access_log: Path) -> str:
    """translate.conf with ``127.0.0.1:PORT`` upstreams (same parameters) and listen port."""

    def servers(match: re.Match[str]) -> str:
        indent, params = match.group(1), match.group(2)
        return "\n".join(f"{indent}server 127.0.0.1:{p}{params};" for p in upstream_ports)

    text = SITE.read_text()
    text = substitute(r"^(\s*)server\s+translate-replica:8000([^;]*);", servers, text)
    text = substitute(r"^(\s*)listen\s+8080;", rf"\g<1>listen 127.0.0.1:{port};", text)
    return substitute(r"access_log\s+\S+\s+translate;", f"access_log {access_log} translate;",
                      text)


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Wait until something accepts connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("nginx did not listen")


@contextmanager
def running_nginx(binary: str, directory: Path, upstream_ports: list[int], port: int
                  ) -> Iterator[Path]:
    """nginx on ``127.0.0.1:port`` in front of the upstreams; yields its access log."""
    access_log = directory / "access.log"
    (directory / "site.conf").write_text(render_site(upstream_ports, port, access_log))
    main = directory / "nginx.conf"
    main.write_text(MAIN.format(dir=directory))
    args = [binary, "-p", str(directory), "-c", str(main), "-e", str(directory / "error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        pytest.fail(f"nginx rejects the rendered configuration:\n{check.stderr}")
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, process)
        yield access_log
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass(frozen=True)
class LogLine:
    """One request as nginx saw it: its status and every upstream tried, in order."""

    status: int
    upstreams: list[str]


def read_access_log(path: Path) -> list[LogLine]:
    """The JSON lines of the ``translate`` log format."""
    lines = []
    for raw in path.read_text().splitlines():
        entry = json.loads(raw)
        tried = [part.strip() for part in entry["upstream_addr"].split(",") if part.strip()]
        lines.append(LogLine(int(entry["status"]), tried))
    return lines
