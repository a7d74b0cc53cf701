"""The ``cpu`` image: lean, non-root, torch-free; it starts, becomes ready (its HEALTHCHECK
too), translates with the bundled and a mounted read-only model, and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.deploy.conftest import Image, real_bundles
from tests.deploy.containers import container_cli, http, run_server

pytestmark = pytest.mark.container

# What the image must not contain, checked from inside it.
INSPECT = """
import importlib.util, json, os, shutil
print(json.dumps({
    "uid": os.getuid(),
    "torch": importlib.util.find_spec("torch") is not None,
    "onnxruntime": importlib.util.find_spec("onnxruntime") is not None,
    "tools": [t for t in ("gcc", "cc", "make", "pip", "pip3") if shutil.which(t)],
    "apt_lists": os.listdir("/var/lib/apt/lists") if os.path.isdir("/var/lib/apt/lists")
                 else [],
    "models": sorted(os.listdir("/models")),
}))
"""
DEFAULT_MODEL = "transformer-en-fr"  # the best recorded BLEU among the shipped models
SENTENCE = {True: "In the beginning God created the heaven and the earth.",
            False: "the cat eats fish."}


def healthcheck(tag: str) -> dict[str, Any]:
    """The image's HEALTHCHECK as recorded by docker (``Config.Healthcheck``) or podman."""
    config = json.loads(container_cli("image", "inspect", "--format", "{{json .Config}}",
                                      tag).stdout)
    if config.get("Healthcheck"):
        return dict(config["Healthcheck"])
    return dict(json.loads(container_cli("image", "inspect", "--format",
                                         "{{json .HealthCheck}}", tag).stdout))


def test_image_is_non_root_torch_free_and_without_build_tools(cpu_image: Image) -> None:
    config = json.loads(container_cli("image", "inspect", "--format", "{{json .Config}}",
                               cpu_image.tag).stdout)
    health = healthcheck(cpu_image.tag)
    assert config["User"] == "10001:10001"
    assert config["StopSignal"] == "SIGTERM"
    assert {"TRANSLATE_HOST=0.0.0.0", "TRANSLATE_MODELS_DIR=/models"} <= set(config["Env"])
    assert "/health/ready" in " ".join(health["Test"])
    inside = json.loads(container_cli("run", "--rm", "--entrypoint", "python", cpu_image.tag,
                               "-c", INSPECT).stdout)
    assert inside["uid"] == 10001 and inside["onnxruntime"] and not inside["torch"]
    assert inside["tools"] == [] and inside["apt_lists"] in ([], ["partial"])
    assert inside["models"], "no bundled models"


def test_container_translates_and_exits_0_on_sigterm(cpu_image: Image) -> None:
    container = run_server(
        cpu_image.tag, name=f"s2s-test-{os.getpid()}",
        env={"TRANSLATE_DRAIN_TIMEOUT_S": "10"},
        volumes=(f"{cpu_image.user_bundle}:/models/user:ro",))
    try:
        ready_s = container.wait_ready()
        probe = healthcheck(cpu_image.tag)["Test"]  # ["CMD", argv...] or ["CMD-SHELL", line]
        argv = probe[1:] if probe[0] == "CMD" else ["sh", "-c", probe[1]]
        assert container_cli("exec", container.name, *argv, check=False).returncode == 0
        sentence = SENTENCE[cpu_image.real_models]
        status, body = http(f"{container.base}/translate",
                            {"text": sentence, "source_lang": "en", "target_lang": "fr"})
        assert status == 200, body
        text = body["translations"][0]["text"]
        assert text.strip()
        if cpu_image.real_models:  # a French translation, not an echo
            assert text.strip().lower() != sentence.lower()
            assert body["model"] == DEFAULT_MODEL or DEFAULT_MODEL not in {
                path.name for path in real_bundles()}
        status, custom = http(f"{container.base}/translate",
                              {"text": sentence, "model": "user", "beam_size": 1})
        assert status == 200, custom  # the mounted read-only bundle is served too
        started = time.monotonic()
        container_cli("stop", "-t", "30", container.name, timeout=60)
        stop_s = time.monotonic() - started
        state, logs = container.state(), container.logs()
        assert state["ExitCode"] == 0, logs
        assert '"message": "stopped"' in logs
        print(f"image built in {cpu_image.build_seconds:.0f} s, ready in {ready_s:.1f} s, "
              f"stopped in {stop_s:.1f} s; {body['model']}: {sentence!r} -> {text!r}")
    finally:
        container.remove()
