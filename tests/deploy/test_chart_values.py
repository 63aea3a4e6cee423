"""Bad values fail at install with the key named; values.yaml is documented and its schema current."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from deploy_helpers import CHART, REPO, helm, render, variant_values


def with_changes(base: dict, changes: dict) -> dict:
    """base with changes merged in (dicts merged key by key)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = with_changes(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize(("changes", "where", "why"), [
    ({"controller": {"replicas": "two"}}, "/controller/replicas", "want integer"),
    ({"ports": {"grpc": 70000}}, "/ports/grpc", "maximum"),
    ({"gpuJobs": {"gpus": {"train": "1"}}}, "/gpuJobs/gpus/train", "want integer"),
    ({"gpuJobs": {"nodeSelector": {"nvidia.com/gpu.product": 100}}}, "/gpuJobs/nodeSelector/nvidia.com~1gpu.product", "want string"),
    ({"gpuJobs": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Sometimes"}]}}, "/gpuJobs/tolerations/0/operator", ""),
    ({"vllmTeacher": {"enableLora": "yes"}}, "/vllmTeacher/enableLora", "want boolean"),
    ({"runners": {"train": "slurm"}}, "/runners/train", ""),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", ""),
    ({"pipelineDefaults": {"train": {"method": "qlora2"}}}, "/pipelineDefaults/train/method", ""),
    ({"controller": {"extraVolumeMounts": [{"name": "x"}]}}, "/controller/extraVolumeMounts/0", "missing property 'mountPath'"),
    ({"gpuJobs": {"labels": {"kueue.x-k8s.io/queue-name": 1}}}, "/gpuJobs/labels/kueue.x-k8s.io~1queue-name", "want string"),
    ({"gpuJobs": {"pullPolicy": "Sometimes"}}, "/gpuJobs/pullPolicy", ""),
    ({"vllmTeacher": {"topologySpreadConstraints": {"maxSkew": 1}}}, "/vllmTeacher/topologySpreadConstraints", "want array"),
])
def test_schema_refuses_wrong_types_naming_the_key(changes, where, why):
    with pytest.raises(helm.HelmValuesError) as err:
        render(with_changes(variant_values("default-values"), changes))
    assert f"at '{where}'" in str(err.value)
    assert why in str(err.value)


@pytest.mark.parametrize(("changes", "where", "key"), [
    ({"bogus": 1}, "", "bogus"),
    ({"gpuJobs": {"gpu": 1}}, "/gpuJobs", "gpu"),
    ({"controller": {"resources": {"limit": {"cpu": "1"}}}}, "/controller/resources", "limit"),
    ({"store": {"s3": {"accessKey": "AKIA..."}}}, "/store/s3", "accessKey"),
    ({"stages": {"judge": {"enabled": True}}}, "/stages", "judge"),
    ({"pipelineDefaults": {"generate": {"teacher": {"base_uri": "http://x"}}}}, "/pipelineDefaults/generate/teacher", "base_uri"),
    ({"controller": {"extraEnvs": []}}, "/controller", "extraEnvs"),
    ({"gpuJobs": {"scratch": {"disk": "1Gi"}}}, "/gpuJobs/scratch", "disk"),
    ({"stages": {"generator": {"podLabel": {}}}}, "/stages/generator", "podLabel"),
    ({"metrics": {"serviceMonitor": {"intervall": "1m"}}}, "/metrics/serviceMonitor", "intervall"),
])
def test_schema_refuses_unknown_keys_naming_them(changes, where, key):
    with pytest.raises(helm.HelmValuesError) as err:
        render(with_changes(variant_values("default-values"), changes))
    assert re.search(rf"at '{re.escape(where)}': additional properties? '{re.escape(key)}' not allowed", str(err.value)), str(err.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"store": {"uri": ""}}, "store.uri is required"),
    ({"store": {"uri": "/data/store"}}, "store.uri must be s3://bucket/prefix"),
    ({"store": {"s3": {"endpoint": ""}}}, "store.s3.endpoint is required: the S3 endpoint URL"),
    ({"store": {"s3": {"endpoint": "minio:9000"}}}, "store.s3.endpoint must be an http(s):// URL"),
    ({"store": {"s3": {"existingSecret": ""}}}, "store.s3.existingSecret is required"),
    ({"auth": {"existingSecret": ""}}, "auth.existingSecret is required"),
    ({"stages": {"dataprep": {"enabled": False}}}, "runners.prepare is grpc but stages.dataprep.enabled is false"),
    ({"runners": {"train": "grpc"}}, "runners.train is grpc but stages.trainer.enabled is false"),
    ({"vllmTeacher": {"enabled": True}, "teacher": {"existingSecret": "keys"}}, "vllmTeacher.modelsClaim is required"),
    ({"vllmTeacher": {"enabled": True, "model": "meta-llama/Llama-3.1-8B-Instruct"}, "teacher": {"existingSecret": "keys"}},
     "vllmTeacher.offline is true"),
    ({"vllmTeacher": {"enabled": True, "modelsClaim": "m"}}, "teacher.existingSecret is required with vllmTeacher.enabled"),
    ({"minio": {"enabled": True, "bucket": "other"}}, "must use the dev MinIO's bucket \"other\""),
])
def test_missing_or_inconsistent_settings_fail_at_install(changes, message):
    with pytest.raises(helm.HelmRenderError) as err:
        render(with_changes(variant_values("default-values"), changes))
    assert message in str(err.value)


def test_nothing_renders_without_values():
    with pytest.raises(helm.HelmError, match="store.uri is required"):
        render({})


def test_minio_needs_no_endpoint():
    objects = render(with_changes(variant_values("dev-minio-values"), {"store": {"s3": {"endpoint": ""}}}))
    assert any(o["metadata"]["name"].endswith("-minio") for o in objects)


def test_values_schema_is_current_and_closed():
    before = (CHART / "values.schema.json").read_text()
    script = REPO / "scripts" / "gen_values_schema.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    after = (CHART / "values.schema.json").read_text()
    if after != before:
        (CHART / "values.schema.json").write_text(before)
    assert result.returncode == 0, result.stderr
    assert after == before, "values.schema.json is stale: run python scripts/gen_values_schema.py"
    schema = json.loads(before)

    def closed(node: dict, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
            for key, child in node["properties"].items():
                closed(child, f"{path}.{key}")

    closed(schema, "values")


def test_every_value_is_documented_in_place():
    """Each leaf key of values.yaml has a `# --` comment above it or inside a documented section."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the open sections
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(3).split(" #")[0].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j, here = i - 1, False
        while j >= 0 and lines[j].strip().startswith("#"):
            here = here or lines[j].strip().startswith("# --")
            j -= 1
        documented = here or any(doc for _, doc in stack)
        if rest:
            if not documented:
                undocumented.append(f"values.yaml:{i + 1}: {line.strip()}")
        else:
            stack.append((indent, documented))
    assert undocumented == []


def test_chart_readme_is_generated_from_the_values_and_current():
    readme = CHART / "README.md"
    before = readme.read_text()
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_chart_readme.py")], capture_output=True, text=True, timeout=60)
    after = readme.read_text()
    if after != before:
        readme.write_text(before)
    assert result.returncode == 0, result.stderr
    assert after == before, "helm/synthtune/README.md is stale: run python scripts/gen_chart_readme.py"
    documented = set(re.findall(r"^\| `([\w.]+)` \|", before, re.M))
    for key in ("gpuJobs.scratch.cache", "gpuJobs.labels", "controller.topologySpreadConstraints", "stages.dataprep.extraVolumeMounts",
                "vllmTeacher.priorityClassName", "minio.podLabels", "metrics.serviceMonitor.enabled", "teacher.allowExternal"):
        assert key in documented, key
    assert "README.tpl.md" in (CHART / ".helmignore").read_text()
