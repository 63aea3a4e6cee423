"""Render the Helm chart with the real Helm v4 engine (helm-python-sdk) and pick objects out of it."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "synthtune"
VARIANTS = sorted((CHART / "ci").glob("*.yaml"))
VARIANT_IDS = [p.stem for p in VARIANTS]
K8S_DIR = REPO / "k8s"
K8S_VERSION = "1.33.0"
RELEASE, NAMESPACE = "synthtune", "ml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def variant_values(name: str) -> dict[str, Any]:
    return copy.deepcopy(load_yaml(CHART / "ci" / f"{name}.yaml"))


@functools.lru_cache(maxsize=1)
def chart() -> Any:
    return helm.Chart.load(str(CHART))


def render_files(values: dict[str, Any]) -> dict[str, str]:
    """Template path (without the chart name) -> rendered text, as `helm install` would produce."""
    out = chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {path.split("/", 1)[1]: text for path, text in out.items()}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders (hooks included, NOTES.txt left out)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values).items()):
        if not path.endswith(".txt"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@functools.cache
def _rendered_variant(name: str) -> tuple[str, ...]:
    return tuple(yaml.safe_dump(o) for o in render(variant_values(name)))


def rendered_variant(name: str) -> list[dict[str, Any]]:
    """The objects of a ci/ variant (rendered once per session; callers get fresh copies)."""
    return [yaml.safe_load(text) for text in _rendered_variant(name)]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    hits = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(hits) == 1, f"expected one {kind} named *{suffix}, found {[o['metadata']['name'] for o in hits]}"
    return hits[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every workload: Deployments, Jobs and bare Pods (the test hook)."""
    specs = []
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            specs.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((f"Pod/{o['metadata']['name']}", o["spec"]))
    return specs


def controller_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    cm = named(objects, "ConfigMap", "-config")
    return yaml.safe_load(cm["data"]["controller.yaml"])


def assert_pod_secure(where: str, spec: dict[str, Any]) -> None:
    """The security defaults every pod we ship keeps: non-root, RuntimeDefault seccomp, read-only root,
    no privilege escalation, every capability dropped, a writable /tmp on an emptyDir, limits set."""
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc.get("runAsUser", 1) != 0, where
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
    writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
        assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
        assert sc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
        assert sc.get("privileged") is not True, (where, c["name"])
        assert c["resources"]["limits"]["memory"] and c["resources"]["requests"], (where, c["name"])
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert mounts.get("/tmp") in writable, (where, c["name"], mounts)
        assert ":" in c["image"] and not c["image"].endswith(":latest"), (where, c["image"])
        for e in c.get("env", []):
            sensitive = any(w in e["name"] for w in ("SECRET", "PASSWORD", "TOKEN", "API_KEY", "ACCESS_KEY"))
            assert not (sensitive and "value" in e), (where, e["name"], "secrets come from Secrets, never values")
