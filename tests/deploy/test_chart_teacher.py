"""The in-cluster teacher's weights from the store, and the chart's "private by default" rule against Python's.

Rendered by the real Helm engine (helm-python-sdk), validated with kubernetes-validate --strict.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from deploy_helpers import (
    CHART,
    K8S_VERSION,
    NAMESPACE,
    assert_pod_secure,
    helm,
    named,
    render,
    variant_values,
)

from synthtune.spec.dataflow import is_external


def teacher_values(**teacher: object) -> dict:
    values = variant_values("gpu-teacher-values")
    values["vllmTeacher"] = {**values["vllmTeacher"], **teacher}
    return values


def teacher_pod(values: dict) -> dict:
    objects = render(values)
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return named(objects, "Deployment", "-teacher")["spec"]["template"]["spec"]


@pytest.mark.parametrize("model", ["plant-teacher", "s3://ml-artifacts/synthtune/models/plant-teacher"])
def test_a_teacher_pushed_to_the_store_is_pulled_by_an_init_container_and_served_from_its_cache(model):
    values = teacher_values(model=model, fromStore=model == "plant-teacher", modelsClaim="", storeCacheSize="40Gi")
    lint = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{K8S_VERSION}")
    assert [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"] == []
    pod = teacher_pod(values)
    assert_pod_secure("teacher", pod)
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example.internal/ml/synthtune-generator:0.1.0"  # the image whose entry point is the CLI
    assert init["command"] == ["synthtune", "models", "pull", model, "--out", "/model-store/model"]
    env = {e["name"]: e for e in init["env"]}
    assert env["SYNTHTUNE_STORE"]["value"] == "s3://ml-artifacts/synthtune" and env["SYNTHTUNE_S3_ENDPOINT"]["value"] == "http://minio.storage.svc:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "synthtune-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}["/model-store"] == "model-store"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-store"] == {"name": "model-store", "emptyDir": {"sizeLimit": "40Gi"}} and "models" not in volumes
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    (vllm,) = pod["containers"]
    assert vllm["args"][:3] == ["/model-store/model", "--served-model-name", "llama-70b"]
    mounts = {m["mountPath"]: m for m in vllm["volumeMounts"]}
    assert mounts["/model-store"] == {"name": "model-store", "mountPath": "/model-store", "readOnly": True}


def test_the_init_command_is_one_the_cli_accepts():
    import typer

    from synthtune.cli.main import app

    (init,) = teacher_pod(teacher_values(model="plant-teacher", fromStore=True, modelsClaim=""))["initContainers"]
    cli = typer.main.get_command(app)
    args = init["command"][1:]
    ctx = cli.make_context("synthtune", list(args), resilient_parsing=False)
    models = cli.get_command(ctx, "models")
    pull = models.get_command(ctx, "pull")  # type: ignore[attr-defined]
    assert pull is not None
    params = pull.make_context("pull", list(args[2:]), parent=ctx).params
    assert params["model"] == "plant-teacher" and str(params["out"]) == "/model-store/model"


def test_weights_on_a_claim_still_need_no_init_container():
    pod = teacher_pod(variant_values("gpu-teacher-values"))
    assert "initContainers" not in pod and pod["containers"][0]["args"][0] == "/models/llama-3.1-70b-instruct"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "teacher-models", "readOnly": True} and "model-store" not in volumes


@pytest.mark.parametrize(("teacher", "message"), [
    ({"model": "/models/x", "fromStore": True}, r"vllmTeacher.fromStore is true but vllmTeacher.model \"/models/x\" is a folder"),
    ({"model": "Qwen/Qwen2.5-7B-Instruct", "fromStore": False}, r"push it to the store \(synthtune models push\) and set vllmTeacher.fromStore=true"),
    ({"storeCacheSize": 40}, r"storeCacheSize"),
])
def test_bad_teacher_values_are_refused_naming_the_value(teacher, message):
    with pytest.raises(helm.HelmError, match=message):  # a template's fail, or the values schema
        render(teacher_values(**teacher))


# Each URL and where it goes; the chart and synthtune.spec.dataflow.is_external must both say so.
URLS = {
    "https://api.openai.com/v1": True,
    "http://8.8.8.8:8000/v1": True,
    "http://172.32.0.1/v1": True,
    "http://172.15.255.255/v1": True,
    "http://192.169.0.1/v1": True,
    "http://11.0.0.1/v1": True,
    "http://100.64.0.1/v1": True,
    "http://192.0.2.10/v1": True,
    "http://0.0.0.0:8000/v1": True,
    "http://[2606:4700::1111]/v1": True,
    "http://[fe00::1]/v1": True,
    "http://teacher.example.com/v1": True,
    "http://teacher.svc./v1": True,
    "http://10.0.0.5:8000/v1": False,
    "http://10.255.255.255/v1": False,
    "http://172.16.0.1/v1": False,
    "http://172.31.255.1:8000/v1": False,
    "http://192.168.1.20/v1": False,
    "http://127.0.0.1:8000/v1": False,
    "http://169.254.169.254/v1": False,
    "http://[::1]:8000/v1": False,
    "http://[fd00:10::5]:8000/v1": False,
    "http://[FC00::1]/v1": False,
    "http://[fe80::1]/v1": False,
    "http://teacher:8000/v1": False,
    "http://localhost:8000/v1": False,
    "http://vllm.models.svc:8000/v1": False,
    "http://vllm.models.svc.cluster.local:8000/v1": False,
    "http://Teacher.Models.SVC/v1": False,
    "http://llm.corp.internal/v1": False,
    "http://user@teacher:8000/v1": False,
    "http://teacher:8000?x=1": False,
}


def chart_says_external(url: str) -> bool:
    values = variant_values("default-values")
    values["pipelineDefaults"] = {"generate": {"teacher": {"backend": "openai", "model": "m", "base_url": url}}}
    try:
        render(values)
    except helm.HelmRenderError as exc:
        assert "outside the cluster: set teacher.allowExternal=true" in str(exc), exc
        return True
    return False


@pytest.mark.parametrize(("url", "external"), URLS.items(), ids=list(URLS))
def test_the_chart_and_python_agree_on_what_is_outside_the_cluster(url, external):
    assert (is_external(url), chart_says_external(url)) == (external, external)
