"""The e2e harness's conversion of the rendered chart for `podman kube play` does what docs/deploy.md says it does."""

from __future__ import annotations

import json
import sys

from deploy_helpers import REPO, rendered_variant

sys.path.insert(0, str(REPO / "scripts"))
from e2e_standin import containers

SECRETS = {"synthtune-s3": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, "synthtune-auth": {"SYNTHTUNE_AUTH_TOKEN": "t"}}


def convert(tmp_path):
    objects = rendered_variant("e2e-values")
    components = [o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects if o["kind"] == "Deployment"]
    ports = {c: (41000 + 2 * i, 41001 + 2 * i) for i, c in enumerate(components)}
    pods, config = containers.for_podman(objects, ports, SECRETS, tmp_path / "config", "synthtune", "ml")
    return objects, ports, pods, config


def test_every_stage_is_a_service_and_the_controller_reaches_each_on_its_port(tmp_path):
    objects, ports, pods, config = convert(tmp_path)
    assert sorted(ports) == ["controller", "dataprep", "evaluator", "generator", "trainer"]
    assert set(config["runners"].values()) == {"grpc"}
    assert config["leader"]["lease"] is False
    service_of = {"prepare": "dataprep", "generate": "generator", "train": "trainer", "evaluate": "evaluator"}
    assert config["services"] == {k: f"127.0.0.1:{ports[v][0]}" for k, v in service_of.items()}
    assert (tmp_path / "config" / "controller.yaml").is_file()


def test_pods_keep_images_commands_and_security_and_lose_only_cluster_objects(tmp_path):
    objects, ports, pods, _ = convert(tmp_path)
    rendered = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert sorted(p["metadata"]["name"] for p in pods) == sorted(rendered)
    for pod in pods:
        spec = pod["spec"]["template"]["spec"]
        before = rendered[pod["metadata"]["name"]]["spec"]["template"]["spec"]
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        assert spec["hostNetwork"] is True and spec["securityContext"] == before["securityContext"]
        (c,), (b,) = spec["containers"], before["containers"]
        assert (c["image"], c["command"], c["securityContext"]) == (b["image"], b["command"], b["securityContext"])
        grpc_port, metrics_port = ports[component]
        assert c["args"][c["args"].index("--port") + 1] == str(grpc_port)
        assert c["args"][c["args"].index("--metrics-port") + 1] == str(metrics_port)
        assert [a for a in c["args"] if a not in (str(grpc_port), str(metrics_port))] == \
               [a for a in b["args"] if a not in ("50051", "9090")]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == grpc_port
            assert c[probe]["grpc"].get("service") == b[probe]["grpc"].get("service")
        assert [e["name"] for e in c["env"]] == [e["name"] for e in b["env"]]
        assert all("value" in e for e in c["env"]), "no secretKeyRef or fieldRef is left for podman"
        assert {m["mountPath"] for m in c["volumeMounts"]} == {m["mountPath"] for m in b["volumeMounts"]}
        text = json.dumps(spec)
        assert "configMap" not in text and "secretKeyRef" not in text
        assert all(v["name"].startswith(f"{component}-") for v in spec["volumes"]), "emptyDirs are per pod"
