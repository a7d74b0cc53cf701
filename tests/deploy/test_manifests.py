"""The deployment files agree with the service's Settings and with each other: every
``TRANSLATE_*`` name is a setting, probes hit the health routes on the served port, image
names, drain and grace periods line up. Fast: nothing is built or started."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.containers import ROOT
from tests.deploy.manifests import (
    DEPLOY_FILES,
    K8S,
    NGINX_SITE,
    SETTING_NAME,
    compose,
    compose_default,
    container,
    dockerfile_env,
    k8s,
    k8s_named,
    named_port,
    seconds,
    setting_names,
)

PORT = 8000
DRAIN_S = 30.0


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda path: path.name)
def test_every_translate_variable_is_a_setting(path: Path) -> None:
    unknown = set(SETTING_NAME.findall(path.read_text())) - setting_names()
    assert not unknown, f"{path.name} names variables the service does not read: {unknown}"


def test_dockerfile_defaults_targets_and_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    env = dockerfile_env()
    assert env["TRANSLATE_HOST"] == "0.0.0.0" and env["TRANSLATE_PORT"] == str(PORT)
    assert float(env["TRANSLATE_DRAIN_TIMEOUT_S"]) == DRAIN_S
    assert re.search(rf"^EXPOSE {PORT}$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/ready", text, re.MULTILINE)
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.MULTILINE)
    assert ("debian:bookworm-slim", "python") in stages
    assert {"cpu", "gpu"} <= {name for _, name in stages}
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)


def test_dockerignore_keeps_only_what_the_image_needs() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {line[1:] for line in lines if line.startswith("!")} == {
        "pyproject.toml", "README.md", "inference/", "service/", "models/"}
    assert "models/**/weights" in lines


def compose_services() -> dict[str, Any]:
    return dict(compose()["services"])


def test_compose_services_profiles_and_images() -> None:
    services = compose_services()
    assert "profiles" not in services["translate"]  # CPU is the default
    assert services["translate-gpu"]["profiles"] == ["gpu"]
    assert services["translate-replica"]["profiles"] == services["lb"]["profiles"] == ["scale"]
    for name, target in (("translate", "cpu"), ("translate-gpu", "gpu"),
                         ("translate-replica", "cpu")):
        service = services[name]
        assert service["build"]["target"] == target
        assert compose_default(service["image"]) == f"seq2seq-serve:{target}"
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        assert bool(devices) == (target == "gpu")
    gpu = services["translate-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


@pytest.mark.parametrize("name", ["translate", "translate-gpu", "translate-replica"])
def test_compose_port_health_drain_and_volumes(name: str) -> None:
    service = compose_services()[name]
    env = service["environment"]
    assert env["TRANSLATE_PORT"] == str(PORT) and env["TRANSLATE_HOST"] == "0.0.0.0"
    assert env["TRANSLATE_API_KEYS"].startswith("${TRANSLATE_API_KEYS:?")  # required
    for mapping in service.get("ports", []):
        assert compose_default(mapping).rsplit(":", 1)[1] == str(PORT)
    assert f"127.0.0.1:{PORT}/health/ready" in " ".join(service["healthcheck"]["test"])
    assert seconds(service["stop_grace_period"]) > float(env["TRANSLATE_DRAIN_TIMEOUT_S"])
    assert float(env["TRANSLATE_DRAIN_TIMEOUT_S"]) == DRAIN_S
    volumes = [compose_default(v) for v in service["volumes"]]
    assert any(v.endswith(":/models/user:ro") for v in volumes), "user models, read-only"
    assert env["TRANSLATE_MODELS_DIR"] == "/models"


def test_nginx_balances_the_compose_replicas_with_retries() -> None:
    site = NGINX_SITE.read_text()
    lb = compose_services()["lb"]
    assert f"./{NGINX_SITE.relative_to(ROOT)}:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]
    server = re.search(r"^\s*server\s+([\w-]+):(\d+)\s+(.*);", site, re.MULTILINE)
    assert server and server.group(1) in compose_services() and int(server.group(2)) == PORT
    assert "max_fails=" in server.group(3) and "fail_timeout=" in server.group(3)
    retry = re.search(r"proxy_next_upstream\s+([^;]*);", site)
    assert retry and {"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(
        retry.group(1).split())
    listen = re.search(r"^\s*listen\s+(\d+);", site, re.MULTILINE)
    assert listen and compose_default(lb["ports"][0]).rsplit(":", 1)[1] == listen.group(1)


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


def settings_map() -> dict[str, str]:
    return dict(k8s_named("ConfigMap", "translate-settings")["data"])


def test_k8s_settings_and_secret_are_settings() -> None:
    names = setting_names()
    config = settings_map()
    assert set(config) <= names
    assert config["TRANSLATE_PORT"] == str(PORT) and config["TRANSLATE_HOST"] == "0.0.0.0"
    secret = k8s_named("Secret", "translate-api-keys")
    assert set(secret["stringData"]) <= names
    for deployment in k8s("Deployment"):
        spec = container(deployment)
        assert {e["name"] for e in spec.get("env", [])} <= names
        sources = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in spec["envFrom"]}
        assert sources == {"configMapRef": "translate-settings",
                           "secretRef": "translate-api-keys"}


@pytest.mark.parametrize("name", ["translate", "translate-gpu"])
def test_k8s_probes_port_drain_and_security(name: str) -> None:
    deployment = k8s_named("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    spec = container(deployment)
    assert named_port(spec, "http") == int(settings_map()["TRANSLATE_PORT"]) == PORT
    paths = {"readinessProbe": "/health/ready", "livenessProbe": "/health/live",
             "startupProbe": "/health/ready"}
    for probe, path in paths.items():
        assert spec[probe]["httpGet"]["path"] == path
        assert named_port(spec, spec[probe]["httpGet"]["port"]) == PORT
    pre_stop = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(settings_map()["TRANSLATE_DRAIN_TIMEOUT_S"])
    assert drain == DRAIN_S
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain
    assert spec["resources"]["requests"] and spec["resources"]["limits"]
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    assert spec["securityContext"]["readOnlyRootFilesystem"]
    target = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
    assert spec["image"] == f"seq2seq-serve:{target}"
    assert ("nvidia.com/gpu" in spec["resources"]["limits"]) == (target == "gpu")


@pytest.mark.parametrize("kind", ["Service", "PodDisruptionBudget"])
def test_k8s_selectors_match_a_deployment(kind: str) -> None:
    for obj in k8s(kind):
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [d for d in k8s("Deployment")
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matched) == 1, obj["metadata"]["name"]
        for port in obj["spec"].get("ports", []):
            assert named_port(container(matched[0]), port["targetPort"]) == PORT


def test_k8s_autoscaler_targets_the_cpu_deployment() -> None:
    (hpa,) = k8s("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    deployment = k8s_named("Deployment", target["name"])
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
