"""Faults at start: damaged bundles and an unusable GPU, over the real tiny exported bundle.

Each damage (a missing file, a checksum mismatch, a truncated ONNX graph whose checksum was
updated, a manifest whose state contract does not match the graph) must fail that bundle with
a clear error: with ``load_policy=strict`` readiness stays 503 naming the bundle and the cause;
with ``lenient`` the healthy bundle serves, readiness is 200 and lists the broken one under
``unavailable``, and asking for it by name is a 503 ``model_unavailable``. CUDA asked for on
this CPU-only machine falls back to the CPU with a warning, or fails with ``require_gpu``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inference.bundle import sha256_of
from service.api.app import create_app
from service.api.settings import Settings
from tests.reliability.bundles import add_bundle, edit_manifest

GOOD = "good"
EN_FR = {"source_lang": "en", "target_lang": "fr"}


def missing_file(bundle: Path) -> None:
    """The decoder graph is gone."""
    (bundle / "decoder.onnx").unlink()


def checksum_mismatch(bundle: Path) -> None:
    """One byte appended to the decoder graph after export."""
    with open(bundle / "decoder.onnx", "ab") as graph:
        graph.write(b"\0")


def truncated_graph(bundle: Path) -> None:
    """The encoder cut in half, its checksum updated: ONNX Runtime itself must refuse it."""
    path = bundle / "encoder.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    edit_manifest(bundle, lambda raw: raw["files"].update({"encoder.onnx": sha256_of(path)}))


def contract_mismatch(bundle: Path) -> None:
    """The manifest names a decoder state input the graph does not have."""
    def rename(raw: dict[str, Any]) -> None:
        assert raw["decoder"]["state"], "the transformer bundle carries a key/value state"
        raw["decoder"]["state"][0]["input"] = "no_such_state_input"
    edit_manifest(bundle, rename)


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing-file": (missing_file, "BundleError: bundle {path}: file decoder.onnx is missing"),
    "checksum": (checksum_mismatch, "BundleError: bundle {path}: checksum mismatch for "
                 "decoder.onnx"),
    "truncated": (truncated_graph, "InvalidProtobuf: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF "
                  ": Load model from {path}/encoder.onnx failed"),
    "contract": (contract_mismatch, "BundleError: bundle {path}: state contract does not "
                 "match the graphs: decoder inputs ['no_such_state_input'"),
}


@pytest.fixture(scope="module")
def damaged_models(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory: the healthy bundle and one bundle per damage."""
    root = tmp_path_factory.mktemp("faults")
    add_bundle(trained_bundle, root, GOOD)
    for name, (damage, _) in DAMAGES.items():
        damage(add_bundle(trained_bundle, root, name))
    return root


@contextmanager
def start(settings: Settings) -> Iterator[TestClient]:
    """A started app over the real engine, once loading is over (ready or not)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while "loading" in client.get("/health/ready").json()["reason"]:
            assert time.monotonic() < deadline, "loading never finished"
            time.sleep(0.05)
        yield client


def expected(name: str, root: Path) -> str:
    """The error text expected for the bundle ``name`` under ``root``."""
    return DAMAGES[name][1].format(path=root / name)


def test_lenient_serves_the_healthy_bundle_and_names_the_broken(damaged_models: Path) -> None:
    """Readiness 200 with every broken bundle and its cause; the healthy one translates."""
    settings = Settings(models_dir=damaged_models, load_policy="lenient", threads=1,
                        default_beam_size=1)
    with start(settings) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        unavailable = ready.json()["unavailable"]
        assert set(unavailable) == set(DAMAGES)
        for name in DAMAGES:
            assert expected(name, damaged_models) in unavailable[name], unavailable[name]
        print(f"\nfaults (lenient): unavailable = {json.dumps(unavailable, indent=1)}")
        statuses = {m["name"]: m["status"] for m in client.get("/models").json()["models"]}
        assert statuses == {GOOD: "ready", **{name: "failed" for name in DAMAGES}}
        refused = client.post("/translate", json={"text": "the cat.", "model": "checksum"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "model_unavailable"
        served = client.post("/translate", json={"text": "the cat.", **EN_FR})
        assert served.status_code == 200 and served.json()["model"] == GOOD


@pytest.mark.parametrize("name", DAMAGES)
def test_strict_refuses_to_become_ready(trained_bundle: Path, tmp_path: Path,
                                        name: str) -> None:
    """One broken bundle beside a healthy one: readiness 503 'startup failed' naming it."""
    add_bundle(trained_bundle, tmp_path, GOOD)
    DAMAGES[name][0](add_bundle(trained_bundle, tmp_path, name))
    with start(Settings(models_dir=tmp_path, threads=1, default_beam_size=1)) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["reason"].startswith(f"startup failed: {name}: ")
        assert expected(name, tmp_path) in body["reason"]
        assert list(body["unavailable"]) == [name]


def test_cuda_on_a_cpu_machine_falls_back_with_a_warning(
        trained_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """CUDA first in the providers, no GPU here: served on the CPU, and a warning says so."""
    add_bundle(trained_bundle, tmp_path, GOOD)
    settings = Settings(models_dir=tmp_path, threads=1, default_beam_size=1,
                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with (caplog.at_level(logging.WARNING, logger="inference.session"),
          start(settings) as client):
        assert client.get("/health/ready").status_code == 200
        (model,) = client.get("/models").json()["models"]
        assert model["provider"] == "CPUExecutionProvider"
    warnings = [r.getMessage() for r in caplog.records if r.name == "inference.session"]
    assert any("CUDA was requested but ONNX Runtime runs on CPUExecutionProvider" in text
               for text in warnings), warnings


@pytest.mark.parametrize(("policy", "reason"), [
    ("strict", "startup failed: good: ProviderError: encoder.onnx: CUDA was requested"),
    ("lenient", "no model is loaded"),
])
def test_require_gpu_on_a_cpu_machine_fails_clearly(trained_bundle: Path, tmp_path: Path,
                                                    policy: str, reason: str) -> None:
    """``require_gpu`` without a GPU: the bundle fails with ProviderError; never ready."""
    add_bundle(trained_bundle, tmp_path, GOOD)
    settings = Settings(models_dir=tmp_path, threads=1, require_gpu=True,
                        load_policy=policy)  # type: ignore[arg-type]
    with start(settings) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith(reason), ready.json()
        assert "CUDA was requested" in ready.json()["unavailable"][GOOD]
