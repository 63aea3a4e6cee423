"""The Helm chart rendered by the real Helm v4 engine, every object validated strictly."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

helm = pytest.importorskip("helm_python")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "synthtune"
VARIANTS = sorted((CHART / "ci").glob("*.yaml"))
K8S_VERSION = "1.33.0"


def render(values: dict) -> list[dict]:
    out = helm.Chart.load(str(CHART)).render(values, name="rel", namespace="synth", is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(params=VARIANTS, ids=[p.stem for p in VARIANTS])
def objects(request) -> list[dict]:
    return render(_values(request.param))


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for o in objects:
        if o["kind"] == "Deployment":
            specs.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((o["metadata"]["name"], o["spec"]))
    return specs


def test_every_variant_lints_strictly():
    for path in VARIANTS:
        report = helm.lint(str(CHART), _values(path), strict=True)
        errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert errors == [], (path.name, errors)


def test_every_rendered_object_is_valid_kubernetes(objects):
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_security_defaults_on_every_pod(objects):
    for name, spec in pod_specs(objects):
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "resources" in c and c["resources"]["limits"], name


def test_grpc_probes_on_every_synthtune_deployment(objects):
    for o in objects:
        if o["kind"] != "Deployment" or o["metadata"]["labels"]["app.kubernetes.io/component"] in ("teacher", "minio"):
            continue
        c = o["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == 50051, (o["metadata"]["name"], probe)


def test_role_is_namespaced_and_narrow(objects):
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    assert [r["kind"] for r in roles] == ["Role"]
    rules = {(g, r): sorted(rule["verbs"]) for rule in roles[0]["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    allowed = {("batch", "jobs"), ("", "pods"), ("", "pods/log"), ("coordination.k8s.io", "leases"), ("ray.io", "rayjobs")}
    assert set(rules) <= allowed
    assert rules[("", "pods/log")] == ["get"] and "delete" not in rules[("", "pods")]
    assert not any(o["kind"] in ("ClusterRole", "ClusterRoleBinding") for o in objects)


def test_gpu_job_defaults_target_a100_nodes():
    objs = render(_values(CHART / "ci" / "default-values.yaml"))
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    cfg = yaml.safe_load(cm["data"]["controller.yaml"])
    assert cfg["gpuJobs"]["gpus"] == 1
    assert cfg["gpuJobs"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert cfg["gpuJobs"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert cfg["images"]["trainer"].endswith("synthtune-trainer:0.1.0")


def test_vllm_teacher_requests_gpus_on_gpu_nodes():
    objs = render(_values(CHART / "ci" / "gpu-teacher-values.yaml"))
    teacher = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-teacher"))
    spec = teacher["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 4 and "--enable-lora" in c["args"]
    assert spec["nodeSelector"] and spec["tolerations"]
    role = next(o for o in objs if o["kind"] == "Role")
    assert any("rayjobs" in r["resources"] for r in role["rules"])


def test_missing_store_or_secret_fails_at_install_with_a_message():
    base = _values(CHART / "ci" / "default-values.yaml")
    with pytest.raises(helm.HelmError, match="store.uri is required"):
        render({k: v for k, v in base.items() if k != "store"})
    with pytest.raises(helm.HelmError, match="store.s3.endpoint is required"):
        render({**base, "store": {"uri": "s3://b/p", "s3": {"existingSecret": "s"}}})
    with pytest.raises(helm.HelmError, match="auth.existingSecret is required"):
        render({**base, "auth": {}})


@pytest.mark.parametrize(("values", "key"), [
    ({"controller": {"replicas": "two"}}, "replicas"),
    ({"bogus": 1}, "bogus"),
    ({"gpuJobs": {"gpus": 1, "unknown": True}}, "unknown"),
])
def test_schema_refuses_wrong_types_and_unknown_keys(values, key):
    base = _values(CHART / "ci" / "default-values.yaml")
    with pytest.raises(helm.HelmError, match=key):
        render({**base, **values})


def test_values_schema_is_current():
    import subprocess
    import sys

    before = (CHART / "values.schema.json").read_text()
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_values_schema.py")], check=True, capture_output=True)
    assert (CHART / "values.schema.json").read_text() == before, "values.schema.json is stale: run scripts/gen_values_schema.py"
    assert json.loads(before)["additionalProperties"] is False


def test_k8s_manifests_are_valid():
    for path in sorted((REPO / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for obj in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    job = yaml.safe_load((REPO / "k8s" / "train-job.yaml").read_text())
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In", "values": [2]}}
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["args"][0] == "--request"


def test_kustomization_lists_existing_files():
    kust = yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())
    assert all((REPO / "k8s" / r).is_file() for r in kust["resources"])


def test_deploy_doc_names_only_real_values_keys():
    import re

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    doc = (REPO / "docs" / "deploy.md").read_text()
    keys = set(re.findall(r"`([a-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)+)`", doc))
    top = set(values)
    checked = 0
    for key in sorted(keys):
        parts = key.split(".")
        if parts[0] not in top:
            continue
        node = values
        for p in parts:
            assert isinstance(node, dict) and p in node, f"docs/deploy.md mentions {key}, which values.yaml lacks"
            node = node[p]
        checked += 1
    assert checked >= 15
