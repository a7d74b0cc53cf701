"""Test helpers: a bundle directory with only ``model.json``, a scripted engine, HTTP checks."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fastapi.testclient import TestClient

from service.api import Settings
from service.api.batcher import DecodeOptions
from service.api.registry import LoadedModel
from service.bundle import DecoderContract, Manifest, read_manifest
from service.inference.translator import Alternative, Translation


def write_manifest(directory: Path, *, src: str = "en", tgt: str = "fr",
                   dtype: str = "float32", bleu: float | None = None) -> Path:
    """A bundle directory holding only a readable ``model.json`` (enough for discovery);
    ``bleu``: the beam-4 test BLEU a packaged bundle records."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        name=directory.name, architecture="transformer", source_lang=src, target_lang=tgt,
        special_tokens={"pad": 0, "eos": 1, "decoder_start": 0, "unk": 2}, vocab_size=10,
        max_positions=64, dtype=dtype, opset=17, encoder_inputs=[], encoder_outputs=[],
        decoder=DecoderContract(log_probs="log_probs", state=[], static=[]), versions={},
        metadata={"test_bleu": 12.5} if bleu is None else {
            "evaluation": {"beam4": {"bleu": bleu}}})
    (directory / "model.json").write_text(manifest.to_json())
    return directory


@dataclass
class FakeEngine:
    """Translates ``x`` to ``<tgt>:x``; records every call; ``delay`` seconds per call."""

    manifest: Manifest
    provider: str = "FakeExecutionProvider"
    delay: float = 0.0
    calls: list[tuple[list[str], DecodeOptions]] = field(default_factory=list)
    steps: int = 0
    release: threading.Event | None = None  # when set, calls block until it is set

    def translate(self, texts: list[str], options: DecodeOptions) -> list[Translation]:
        self.calls.append((list(texts), options))
        if self.release is not None:
            self.release.wait(10)
        time.sleep(self.delay)
        self.steps += 3
        out = []
        for text in texts:
            best = f"{self.manifest.target_lang}:{text}"
            alternatives = [Alternative(best if i == 0 else f"{best}#{i}", -0.5 - i)
                            for i in range(options.num_hypotheses)]
            out.append(Translation(best, -0.5, "eos", alternatives, False, len(text.split()) + 1,
                                   len(text.split()) + 1))
        return out

    def decode_steps(self) -> int:
        return self.steps


@dataclass
class FakeLoader:
    """A loader that builds :class:`FakeEngine` objects and can refuse named bundles."""

    delay: float = 0.0
    broken: set[str] = field(default_factory=set)
    engines: dict[Path, FakeEngine] = field(default_factory=dict)
    release: threading.Event | None = None

    def __call__(self, path: Path, settings: Settings) -> LoadedModel:
        if path.name in self.broken:
            raise ValueError(f"bundle {path}: checksum mismatch")
        engine = FakeEngine(read_manifest(path), delay=self.delay, release=self.release)
        self.engines[path] = engine
        return engine


def wait_ready(client: TestClient, timeout: float = 30) -> None:
    """Poll ``/health/ready`` until 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(client.get("/health/ready").json())


class Reply(Protocol):
    """What the checks read from a TestClient response."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def error_of(response: Reply, status: int) -> dict[str, Any]:
    """The error object of a response, after checking its status and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "request_id"} <= set(body["error"])
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


MakeClient = Callable[..., TestClient]


def copy_bundle(bundle: Path, root: Path, name: str) -> Path:
    """``bundle`` (with its int8 variant) copied to ``root/name``."""
    return Path(shutil.copytree(bundle, root / name))
