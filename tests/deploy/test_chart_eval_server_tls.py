"""The chart's evaluation server (vLLM with runtime LoRA), TLS on every gRPC hop, and headless stage Services."""

from __future__ import annotations

import pytest
import yaml
from deploy_helpers import by_kind, controller_config, named, render, rendered_variant, variant_values

from synthtune.spec import PipelineSpec

VARIANT = "eval-server-tls-values"


def _container(objects, kind, suffix):  # type: ignore[no-untyped-def]
    return named(objects, kind, suffix)["spec"]["template"]["spec"]["containers"][0]


def _configmap_data(objects):  # type: ignore[no-untyped-def]
    return named(objects, "ConfigMap", "-config")["data"]


def test_eval_server_is_vllm_with_lora_on_a_gpu_its_key_from_a_secret():
    objects = rendered_variant(VARIANT)
    server = named(objects, "Deployment", "-eval-server")
    c = server["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "vllm/vllm-openai:v0.12.0" and c["command"] == ["vllm", "serve"]
    args = c["args"]
    assert args[0] == "/models/smollm2-135m-instruct" and "--enable-lora" in args
    assert args[args.index("--max-lora-rank") + 1] == "32" and args[args.index("--served-model-name") + 1] == "smollm2-135m-instruct"
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "synthtune-eval-server", "key": "VLLM_API_KEY"}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]["value"] == "True"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["adapters"]["mountPath"] == "/adapters"
    claim = named(objects, "PersistentVolumeClaim", "-adapters")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_only_synthtune_pods_may_reach_the_eval_server():
    objects = rendered_variant(VARIANT)
    policy = named(objects, "NetworkPolicy", "-eval-server")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "eval-server"
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    (source,) = rule["from"]
    assert source == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "synthtune", "app.kubernetes.io/instance": "synthtune"}}}


def test_evaluate_is_routed_to_the_eval_server_through_the_evaluator_service():
    objects = rendered_variant(VARIANT)
    config = controller_config(objects)
    assert config["runners"]["evaluate"] == "grpc"  # no GPU Job: the server does the GPU work
    assert config["services"]["evaluate"] == "dns:///synthtune-evaluator-pods:50051"
    defaults = yaml.safe_load(_configmap_data(objects)["pipeline-defaults.yaml"])["evaluate"]
    assert defaults == {**defaults, "backend": "vllm_server", "base_url": "http://synthtune-eval-server:8000/v1",
                        "served_model": "smollm2-135m-instruct", "api_key_env": "EVAL_SERVER_API_KEY",
                        "lora_dir": "/adapters", "server_lora_dir": "/adapters"}
    example = PipelineSpec.model_validate(yaml.safe_load(_configmap_data(objects)["pipeline-example.yaml"]))
    assert example.evaluate.backend == "vllm_server"
    evaluator = _container(objects, "Deployment", "-evaluator")
    env = {e["name"]: e for e in evaluator["env"]}
    assert env["EVAL_SERVER_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "synthtune-eval-server", "key": "VLLM_API_KEY"}
    assert {m["mountPath"] for m in evaluator["volumeMounts"]} >= {"/adapters"}


def test_without_the_eval_server_evaluate_stays_a_gpu_job():
    objects = rendered_variant("default-values")
    assert not [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].endswith("-eval-server")]
    assert controller_config(objects)["runners"]["evaluate"] == "kubernetes"


def test_every_grpc_hop_is_mutual_tls_from_the_certificate_secret():
    objects = rendered_variant(VARIANT)
    config = controller_config(objects)
    assert config["services_tls_ca"] == "/etc/synthtune-tls/ca.crt"
    for d in by_kind(objects, "Deployment"):
        if d["metadata"]["name"].endswith("-eval-server"):
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        args = c["args"]
        assert args[args.index("--tls-cert") + 1] == "/etc/synthtune-tls/tls.crt"
        assert args[args.index("--tls-client-ca") + 1] == "/etc/synthtune-tls/ca.crt"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["SYNTHTUNE_TLS_CA"] == "/etc/synthtune-tls/ca.crt" and env["SYNTHTUNE_TLS_CERT"] == "/etc/synthtune-tls/tls.crt"
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == "synthtune-tls"
    (hook,) = by_kind(objects, "Pod")
    assert hook["spec"]["containers"][0]["args"][4:] == ["/etc/synthtune-tls/ca.crt", "/etc/synthtune-tls/tls.key",
                                                         "/etc/synthtune-tls/tls.crt"]


def test_stage_services_have_headless_twins_for_round_robin():
    objects = rendered_variant(VARIANT)
    headless = {s["metadata"]["name"]: s for s in by_kind(objects, "Service") if s["spec"].get("clusterIP") == "None"}
    assert set(headless) == {"synthtune-dataprep-pods", "synthtune-generator-pods", "synthtune-evaluator-pods"}
    assert named(objects, "Deployment", "-dataprep")["spec"]["replicas"] == 2


@pytest.mark.parametrize(("change", "message"), [
    ({"stages": {"evaluator": {"enabled": False}}}, "evalServer.enabled needs stages.evaluator.enabled"),
    ({"evalServer": {"apiKeySecret": ""}}, "evalServer.apiKeySecret is required"),
    ({"tls": {"existingSecret": ""}}, "tls.existingSecret is required"),
])
def test_missing_pieces_fail_at_install_naming_the_value(change, message):
    values = variant_values(VARIANT)
    for key, sub in change.items():
        values.setdefault(key, {})
        for k, v in sub.items():
            values[key][k] = {**values[key].get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(Exception, match=message):
        render(values)
