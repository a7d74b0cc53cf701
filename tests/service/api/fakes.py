"""Test helpers: a bundle directory with only ``model.json``, a scripted engine, HTTP checks
(a started TestClient's readiness, error bodies, an in-loop client for concurrent requests)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx2 as httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inference.bundle import DecoderContract, Manifest, read_manifest
from inference.translator import Alternative, Translation
from service.api.batcher import Batcher, DecodeOptions
from service.api.engine import Admission, Outcome, Pair
from service.api.registry import LoadedModel
from service.api.settings import Settings


def write_manifest(directory: Path, *, src: str = "en", tgt: str = "fr",
                   dtype: str = "float32", bleu: float | None = None,
                   languages: Sequence[str] = ()) -> Path:
    """A bundle directory holding only a readable ``model.json`` (enough for discovery);
    ``bleu``: the beam-4 test BLEU a packaged bundle records; ``languages``: those of a
    multilingual bundle (made-up token ids)."""
    directory.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {"test_bleu": 12.5} if bleu is None else {
        "evaluation": {"beam4": {"bleu": bleu}}}
    if languages:
        metadata["language_tokens"] = {code: 100 + i for i, code in enumerate(languages)}
    manifest = Manifest(
        name=directory.name, architecture="transformer", source_lang=src, target_lang=tgt,
        special_tokens={"pad": 0, "eos": 1, "decoder_start": 0, "unk": 2}, vocab_size=10,
        max_positions=64, dtype=dtype, opset=17, encoder_inputs=[], encoder_outputs=[],
        decoder=DecoderContract(log_probs="log_probs", state=[], static=[]), versions={},
        metadata=metadata)
    (directory / "model.json").write_text(manifest.to_json())
    return directory


@dataclass
class FakeEngine:
    """Translates ``x`` to ``<tgt>:x`` (the target of its pair, else the bundle's); records
    every call (and its pairs in ``pairs``); ``delay`` seconds per call. Its running loop
    (:class:`FakeLoop`) makes the same calls, one per admitted group."""

    manifest: Manifest
    provider: str = "FakeExecutionProvider"
    delay: float = 0.0
    calls: list[tuple[list[str], DecodeOptions]] = field(default_factory=list)
    pairs: list[list[Pair | None]] = field(default_factory=list)
    steps: int = 0
    release: threading.Event | None = None  # when set, calls block until it is set
    entered: threading.Event = field(default_factory=threading.Event)  # set by every call

    def translate(self, texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]:
        self.calls.append((list(texts), options))
        routes = list(pairs or [None] * len(texts))
        self.pairs.append(routes)
        self.entered.set()
        if self.release is not None:
            self.release.wait(10)
        time.sleep(self.delay)
        self.steps += 3
        out = []
        for text, pair in zip(texts, routes, strict=True):
            best = f"{pair[1] if pair else self.manifest.target_lang}:{text}"
            alternatives = [Alternative(best if i == 0 else f"{best}#{i}", -0.5 - i)
                            for i in range(options.num_hypotheses)]
            out.append(Translation(best, -0.5, "eos", alternatives, False, len(text.split()) + 1,
                                   len(text.split()) + 1))
        return out

    def decode_steps(self) -> int:
        return self.steps

    def decode_loop(self) -> FakeLoop:
        return FakeLoop(self)


class Translates(Protocol):
    """An engine's blocking batched call."""

    def translate(self, texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]: ...


@dataclass
class FakeLoop:
    """A running loop over a scripted engine: each admitted request is translated (one engine
    call, so the engine's records, gates and failures apply) and answered by the next step;
    ``cancelled`` lists the keys the batcher cancelled while they ran."""

    engine: Translates
    results: dict[int, list[Translation]] = field(default_factory=dict)
    cancelled: list[int] = field(default_factory=list)

    @property
    def running(self) -> int:
        return sum(len(result) for result in self.results.values())

    def admit(self, admissions: list[Admission]) -> list[Outcome]:
        for admission in admissions:
            self.results[admission.key] = self.engine.translate(
                admission.texts, admission.options, [admission.pair] * len(admission.texts))
        return []

    def step(self) -> list[Outcome]:
        done: list[Outcome] = list(self.results.items())
        self.results.clear()
        return done

    def step_and_admit(self, admissions: list[Admission], encoder: Executor) -> list[Outcome]:
        return self.step() + self.admit(admissions)

    def cancel(self, key: int) -> None:
        self.results.pop(key, None)
        self.cancelled.append(key)


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


async def until_depth(batcher: Batcher, depth: int, turns: int = 20) -> None:
    """Let the event loop run callbacks until ``batcher.depth == depth`` (a cancelled
    future's callbacks free its queue place and tell the worker to drop it); fails after
    ``turns`` turns of the loop."""
    for _ in range(turns):
        if batcher.depth == depth:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"depth {batcher.depth}, expected {depth}")


def wait_ready(client: TestClient, timeout: float = 30) -> None:
    """Poll ``/health/ready`` until 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(client.get("/health/ready").json())


@asynccontextmanager
async def asgi_client(app: FastAPI, address: str = "127.0.0.1"
                      ) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over ``app`` in the running event loop, from ``address``, once the
    app is ready (its lifespan started): requests awaited together with ``asyncio.gather``
    reach the app concurrently, in the order given."""
    transport = httpx.ASGITransport(app=app, client=(address, 5000))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://t") as client:
        while (await client.get("/health/ready")).status_code != 200:
            await asyncio.sleep(0.01)
        yield client


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
