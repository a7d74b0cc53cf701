"""Read the deployment files (Dockerfile, docker-compose.yml, nginx, Kubernetes) as data."""

from __future__ import annotations

import re
from typing import Any

import yaml

from service.api.settings import Settings
from tests.deploy.containers import ROOT

K8S = ROOT / "deploy" / "k8s"
NGINX_SITE = ROOT / "deploy" / "nginx" / "translate.conf"
DEPLOY_FILES = [ROOT / "Dockerfile", ROOT / "docker-compose.yml", NGINX_SITE,
                ROOT / "docs" / "deployment.md", *sorted(K8S.glob("*.yaml"))]
SETTING_NAME = re.compile(r"\bTRANSLATE_[A-Z0-9_]*[A-Z0-9]\b")
DEFAULTED = re.compile(r"\$\{(\w+):?-([^}]*)\}")


def setting_names() -> set[str]:
    """Every environment variable the service reads (``TRANSLATE_HOST``...)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def compose() -> dict[str, Any]:
    """docker-compose.yml (YAML merge keys resolved by PyYAML)."""
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def compose_default(value: str) -> str:
    """A compose value with every ``${VAR:-default}`` replaced by its default."""
    return DEFAULTED.sub(lambda match: match.group(2), value)


def k8s_documents() -> list[dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s (kustomization.yaml excluded)."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def k8s(kind: str) -> list[dict[str, Any]]:
    """The Kubernetes objects of one kind."""
    return [doc for doc in k8s_documents() if doc["kind"] == kind]


def k8s_named(kind: str, name: str) -> dict[str, Any]:
    """The Kubernetes object of ``kind`` called ``name``."""
    found = [doc for doc in k8s(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The single container of a Deployment."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def named_port(spec: dict[str, Any], port: int | str) -> int:
    """A container port given by number or by name."""
    if isinstance(port, int):
        return port
    return next(int(p["containerPort"]) for p in spec["ports"] if p["name"] == port)


def dockerfile_env() -> dict[str, str]:
    """The ``KEY=value`` pairs of the Dockerfile's ENV instructions (continuations joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, equals, value = pair.partition("=")
                if equals:
                    env[key] = value
    return env


def seconds(duration: str | int) -> float:
    """A compose duration (``40s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"([0-9.]+)(ms|h|m|s)", str(duration))
    assert parts, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)
