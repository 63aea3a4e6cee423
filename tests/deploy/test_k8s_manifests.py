"""Plain manifests under k8s/: valid, scoped like the chart, and a training Job a user can apply."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import CHART, K8S_DIR, K8S_VERSION, REPO, assert_pod_secure, by_kind, rendered_variant
from test_chart_render import ROLE_SCOPE, role_rules

from synthtune.errors import EXIT_BAD_INPUT

MANIFESTS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
YAML_FILES = sorted([*K8S_DIR.glob("*.yaml"), *(CHART / "ci").glob("*.yaml"), CHART / "values.yaml", CHART / "Chart.yaml"])


def k8s_objects() -> list[dict]:
    return [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]


def train_job() -> dict:
    (job,) = yaml.safe_load_all((K8S_DIR / "train-job.yaml").read_text())
    return job


@pytest.mark.parametrize("path", YAML_FILES, ids=[str(p.relative_to(REPO)) for p in YAML_FILES])
def test_every_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifests_are_valid_kubernetes(path):
    for obj in yaml.safe_load_all(path.read_text()):
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_kustomization_names_existing_files_in_one_namespace():
    kust = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    assert all((K8S_DIR / r).is_file() for r in kust["resources"])
    assert {"namespace.yaml", "rbac.yaml"} <= set(kust["resources"])
    for obj in k8s_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == kust["namespace"], obj["metadata"]["name"]
    (ns,) = by_kind(k8s_objects(), "Namespace")
    assert ns["metadata"]["name"] == kust["namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_synthtune_pods_applied_without_helm_take_no_ingress():
    kust = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert "networkpolicy.yaml" in kust["resources"]
    (policy,) = by_kind(k8s_objects(), "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and policy["spec"]["ingress"] == []
    assert selector.items() <= train_job()["spec"]["template"]["metadata"]["labels"].items()


def test_rbac_matches_the_chart():
    objects = k8s_objects()
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    (role,) = by_kind(objects, "Role")
    assert role_rules(role) == {(g, r.format(lease="synthtune-controller")): v for (g, r), v in ROLE_SCOPE.items()}
    chart_role = by_kind(rendered_variant("default-values"), "Role")[0]
    assert role_rules(role) == role_rules(chart_role)
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind(objects, "ServiceAccount")}
    assert binding["subjects"][0]["name"] in accounts
    assert train_job()["spec"]["template"]["spec"]["serviceAccountName"] in set(accounts) - {binding["subjects"][0]["name"]}


def test_train_job_has_exactly_two_fields_to_edit():
    lines = (K8S_DIR / "train-job.yaml").read_text().splitlines()
    edits = [ln for ln in lines if "# EDIT" in ln]
    assert len(edits) == 2
    assert "requests/" in edits[0] and edits[0].strip().startswith("- s3://")
    assert edits[1].strip().startswith("value: http")
    c = train_job()["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:4] == ["python", "-m", "synthtune.trainer.job", "--request"]
    assert {e["name"]: e.get("value") for e in c["env"]}["SYNTHTUNE_S3_ENDPOINT"].startswith("http")


def test_train_job_schedules_on_a100_nodes_securely():
    job = train_job()
    spec = job["spec"]["template"]["spec"]
    assert_pod_secure("k8s/train-job.yaml", spec)
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert c["envFrom"] == [{"secretRef": {"name": "synthtune-s3"}}]
    assert {"/tmp", "/cache", "/dev/shm"} <= {m["mountPath"] for m in c["volumeMounts"]}


def test_train_job_fails_at_once_on_a_bad_request():
    job = train_job()
    rules = job["spec"]["podFailurePolicy"]["rules"]
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "In", "values": [EXIT_BAD_INPUT]}}
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["ttlSecondsAfterFinished"] > 0


@pytest.mark.integration
@pytest.mark.parametrize("request_body", [None, {"stage": "trainer"}], ids=["missing-request", "not-a-request"])
def test_train_job_command_exits_with_the_fail_job_code(request_body, s3_store_uri, tmp_path: Path):
    """The Job's own command, with its own environment, against S3 (moto): a bad request exits with
    the code its podFailurePolicy turns into FailJob, so Kubernetes does not retry it."""
    from synthtune.store import open_store

    job = train_job()
    container = job["spec"]["template"]["spec"]["containers"][0]
    request_uri = f"{s3_store_uri}/requests/train-example.json"
    if request_body is not None:
        open_store(s3_store_uri).put_json("requests/train-example.json", request_body)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update({"SYNTHTUNE_S3_ENDPOINT": os.environ["SYNTHTUNE_S3_ENDPOINT"], "SYNTHTUNE_CACHE": str(tmp_path / "cache"),
                "SYNTHTUNE_MODEL_CACHE": str(tmp_path / "models"), "HF_HOME": str(tmp_path / "hf"),
                "XDG_CACHE_HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path / "mpl")})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "PATH"):
        env[key] = os.environ[key]
    env["PYTHONPATH"] = str(REPO / "services")
    command = [sys.executable if w == "python" else w for w in container["command"][:-1]] + [request_uri]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    fail_job = job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
    assert out.returncode in fail_job, out.stdout + out.stderr
    assert "train-example.json" in out.stderr, out.stderr


def test_k8s_names_cannot_collide_with_any_release():
    """Every name the chart gives an object is <fullname><suffix>; no k8s/ object of the same kind ends in
    such a suffix, so whatever a release is called, Helm never claims (or uninstalls) these objects."""
    from deploy_helpers import RELEASE, render, variant_values

    values = variant_values("platform-values")
    values.update(serviceAccount={"create": True, "name": ""}, gpuJobs={**values["gpuJobs"], "rayJobs": {"enabled": True}})
    suffixes: dict[str, set[str]] = {}
    for obj in render(values):
        name = obj["metadata"]["name"]
        assert name.startswith(RELEASE), name
        suffixes.setdefault(obj["kind"], set()).add(name.removeprefix(RELEASE))
    for obj in k8s_objects():
        name = obj["metadata"]["name"]
        clash = [s for s in suffixes.get(obj["kind"], ()) if name.endswith(s)]
        assert not clash, f"k8s/ {obj['kind']}/{name} ends like the chart's {clash}: a release named {name.removesuffix(clash[0])!r} would claim it"
        assert obj["kind"] == "Namespace" or obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"


def kustomize(folder: Path) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_k8s_is_a_kustomize_base_with_the_image_as_override(tmp_path):
    base = kustomize(K8S_DIR)
    for obj in base:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    (job,) = by_kind(base, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/synthtune/synthtune-trainer:0.1.0"

    # A platform team's overlay: its registry, the request and its S3 endpoint, nothing copied.
    overlay = tmp_path / "my-train"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S_DIR, overlay)],
        "images": [{"name": "ghcr.io/synthtune/synthtune-trainer", "newName": "registry.example.com/ml/synthtune-trainer", "newTag": "0.2.0"}],
        "patches": [{"target": {"kind": "Job", "name": "synthtune-train"}, "patch": yaml.safe_dump([
            {"op": "replace", "path": "/spec/template/spec/containers/0/command/4", "value": "s3://acme/st/requests/train-a.json"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "https://s3.acme.internal"}])}],
    }))
    (job,) = by_kind(kustomize(overlay), "Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/ml/synthtune-trainer:0.2.0"
    assert c["command"][-1] == "s3://acme/st/requests/train-a.json" and c["env"][0] == {"name": "SYNTHTUNE_S3_ENDPOINT", "value": "https://s3.acme.internal"}
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
