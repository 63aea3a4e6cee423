"""The e2e harness's kubectl/helm stand-in, verb by verb, without containers (podman calls are recorded)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from deploy_helpers import CHART, REPO

sys.path.insert(0, str(REPO / "scripts"))
from e2e_standin import cluster, containers

SETS = ["store.uri=s3://synthtune/e2e", "store.s3.endpoint=http://127.0.0.1:9", "store.s3.existingSecret=synthtune-s3",
        "auth.existingSecret=synthtune-auth", "image.repository=localhost", "pipelineDefaults.train.base_model=plant-base"]


@pytest.fixture
def state(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    cluster.new_state(path, tmp_path / "cluster", [CHART / "ci" / "e2e-values.yaml"])
    monkeypatch.setenv("E2E_STANDIN_STATE", str(path))
    monkeypatch.delenv("E2E_SCRIPT_PID", raising=False)
    calls: list[tuple[str, ...]] = []

    def sh(*cmd, check=True, capture=False, timeout=None):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "health: SERVING\n", "")

    monkeypatch.setattr(containers, "sh", sh)
    return path, calls


def kubectl(*args: str) -> str:
    return cluster.kubectl(list(args))


def installed(state) -> dict:
    kubectl("create", "namespace", "synthtune")
    kubectl("-n", "synthtune", "create", "secret", "generic", "synthtune-s3", "--from-literal=AWS_ACCESS_KEY_ID=id",
            "--from-literal=AWS_SECRET_ACCESS_KEY=secret=with=equals")
    kubectl("-n", "synthtune", "create", "secret", "generic", "synthtune-auth", "--from-literal=SYNTHTUNE_AUTH_TOKEN=tok")
    out = cluster.helm(["install", "synthtune", str(CHART), "-n", "synthtune"] + [a for s in SETS for a in ("--set", s)])
    assert "STATUS: deployed" in out
    return json.loads(state[0].read_text())


def test_namespaces_and_secrets_are_recorded_and_secrets_read_back_as_base64(state):
    assert kubectl("create", "namespace", "synthtune") == "namespace/synthtune created\n"
    with pytest.raises(cluster.Refused, match='namespaces "synthtune" already exists'):
        kubectl("create", "namespace", "synthtune")
    kubectl("label", "namespace", "synthtune", "pod-security.kubernetes.io/enforce=restricted")
    kubectl("-n", "synthtune", "create", "secret", "generic", "synthtune-auth", "--from-literal=SYNTHTUNE_AUTH_TOKEN=abc=1")
    saved = json.loads(state[0].read_text())
    assert saved["namespaces"] == {"synthtune": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    out = kubectl("-n", "synthtune", "get", "secret", "synthtune-auth", "-o", "jsonpath={.data.SYNTHTUNE_AUTH_TOKEN}")
    assert base64.b64decode(out).decode() == "abc=1"
    with pytest.raises(cluster.Refused, match="secret synthtune-auth has no key 'TOKEN'"):
        kubectl("-n", "synthtune", "get", "secret", "synthtune-auth", "-o", "jsonpath={.data.TOKEN}")
    with pytest.raises(cluster.Refused, match='namespaces "other" not found'):
        kubectl("-n", "other", "create", "secret", "generic", "x", "--from-literal=A=b")
    with pytest.raises(cluster.Refused, match='secrets "nope" not found'):
        kubectl("-n", "synthtune", "get", "secret", "nope", "-o", "jsonpath={.data.A}")


@pytest.mark.parametrize("args, message", [
    (["apply", "-k", "k8s/"], "kubectl apply flag -k not supported"),
    (["delete", "namespace", "synthtune"], "kubectl delete not supported"),
    (["get", "pods"], "kubectl get pods not supported"),
    (["-n", "synthtune", "get", "secret", "s", "-o", "yaml"], "kubectl get -o yaml not supported"),
    (["logs", "-f", "job/x"], "kubectl logs flag -f not supported"),
])
def test_kubectl_commands_the_stand_in_does_not_know_fail_naming_them(state, args, message, capsys):
    kubectl("create", "namespace", "synthtune")
    kubectl("-n", "synthtune", "create", "secret", "generic", "s", "--from-literal=A=b")
    assert cluster.main(["kubectl", *args]) == 1
    assert f"e2e stand-in: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["upgrade", "synthtune", "helm/synthtune"], "helm upgrade not supported"),
    (["install", "synthtune", "helm/synthtune", "--reuse-values"], "helm install flag --reuse-values not supported"),
    (["uninstall", "synthtune"], "helm uninstall not supported"),
])
def test_helm_commands_the_stand_in_does_not_know_fail_naming_them(state, args, message, capsys):
    assert cluster.main(["helm", *args]) == 1
    assert f"e2e stand-in: {message}" in capsys.readouterr().err


def test_helm_install_renders_the_doc_sets_over_the_e2e_values_and_plays_the_pods_with_the_secrets(state):
    saved = installed(state)
    release = saved["releases"]["synthtune"]
    assert release["values"]["store"]["s3"]["endpoint"] == "http://127.0.0.1:9", "--set wins over the values file"
    assert release["values"]["stages"]["trainer"]["enabled"] is True, "the e2e values are under the --set"
    assert state[1] == [(containers.STANDIN, "kube", release["kube"])]
    assert len({p for pair in release["ports"].values() for p in pair}) == 10, "every pod listens on ports of its own"
    pods = list(yaml.safe_load_all(Path(release["kube"]).read_text()))
    assert len(pods) == 5
    env = {e["name"]: e["value"] for p in pods for c in p["spec"]["template"]["spec"]["containers"] for e in c["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == "secret=with=equals" and env["SYNTHTUNE_AUTH_TOKEN"] == "tok"
    assert all(p["spec"]["template"]["spec"]["containers"][0]["image"].startswith("localhost/synthtune-") for p in pods)
    with pytest.raises(cluster.Refused, match="cannot re-use a name"):
        cluster.helm(["install", "synthtune", str(CHART), "-n", "synthtune"] + [a for s in SETS for a in ("--set", s)])


def test_the_example_pipeline_from_the_configmap_reads_the_upload_and_trains_the_pushed_model_on_cpu(state):
    from synthtune.spec.loader import load_spec_text

    installed(state)
    text = kubectl("-n", "synthtune", "get", "configmap", "synthtune-config", "-o", r"jsonpath={.data.pipeline-example\.yaml}")
    spec = load_spec_text(text, "pipeline.yaml")
    assert spec.source.paths == ["s3://synthtune/e2e/sources/work_orders.csv"]
    assert spec.train.base_model == "plant-base" and spec.train.method == "lora" and spec.train.scaling.gpus_per_worker == 0
    assert spec.generate.limit == 4 and spec.train.max_steps == 2


def test_helm_install_refuses_a_missing_secret_or_namespace(state):
    with pytest.raises(cluster.Refused, match='namespaces "synthtune" not found'):
        cluster.helm(["install", "synthtune", str(CHART), "-n", "synthtune", "--set", SETS[0]])
    kubectl("create", "namespace", "synthtune")
    with pytest.raises(cluster.Refused, match=r"Secrets missing from namespace synthtune: \['synthtune-auth', 'synthtune-s3'\]"):
        cluster.helm(["install", "synthtune", str(CHART), "-n", "synthtune"] + [a for s in SETS for a in ("--set", s)])
    with pytest.raises(cluster.Refused, match="INSTALLATION FAILED: .*store.uri"):
        cluster.helm(["install", "synthtune", str(CHART), "-n", "synthtune", "--set", "store.uri="])
    assert state[1] == [], "nothing was started"


def test_rollout_status_waits_for_that_deployments_readiness_probe(state, monkeypatch):
    installed(state)
    waited = []
    monkeypatch.setattr(containers, "wait_ready", lambda pods, deadline: waited.append([p["metadata"]["name"] for p in pods]))
    out = kubectl("-n", "synthtune", "rollout", "status", "deploy/synthtune-controller", "--timeout=30s")
    assert out == 'deployment "synthtune-controller" successfully rolled out\n' and waited == [["synthtune-controller"]]
    with pytest.raises(cluster.Refused, match='deployments.apps "nope" not found'):
        kubectl("-n", "synthtune", "rollout", "status", "deploy/nope")


def test_helm_test_runs_the_hook_container_with_its_own_command_against_the_controller_port(state):
    saved = installed(state)
    out = cluster.helm(["test", "synthtune", "-n", "synthtune"])
    assert "TEST SUITE:     synthtune-test-health\nPhase:          Succeeded" in out
    run = state[1][-1]
    assert run[1:3] == ("run", "--rm") and "--network" in run and run[run.index("--network") + 1] == "host"
    assert json.loads(run[run.index("--entrypoint") + 1]) == ["python", "-c"]
    controller_port = saved["releases"]["synthtune"]["ports"]["controller"][0]
    assert run[-5] == "localhost/synthtune-generator:dev" and "HealthStub" in run[-4] and run[-2:] == ("synthtune.v1.PipelineService", "60")
    assert run[-3] == f"127.0.0.1:{controller_port}"


def _echo_server(port: int) -> socket.socket:
    srv = socket.create_server(("127.0.0.1", port))

    def serve():
        while True:
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(b"echo " + data)

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_port_forward_relays_a_loopback_port_to_the_controller_until_killed(state):
    saved = installed(state)
    srv = _echo_server(saved["releases"]["synthtune"]["ports"]["controller"][0])
    local = containers.free_port()
    env = dict(os.environ, E2E_PYTHON=sys.executable)
    kubectl_bin = REPO / "scripts" / "e2e_standin" / "bin" / "kubectl"
    proc = subprocess.Popen([str(kubectl_bin), "-n", "synthtune", "port-forward", "svc/synthtune-controller", f"{local}:50051"],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == f"Forwarding from 127.0.0.1:{local} -> 50051\n"
        with socket.create_connection(("127.0.0.1", local), timeout=5) as c:
            c.sendall(b"ping")
            assert c.recv(100) == b"echo ping"
        assert json.loads(state[0].read_text())["port_forwards"] == [proc.pid]
    finally:
        proc.terminate()
        proc.wait(10)
        srv.close()


def test_port_forward_to_a_taken_port_fails_and_records_why(state):
    installed(state)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(cluster.Refused, match=f"unable to listen on port {port}"):
            kubectl("-n", "synthtune", "port-forward", "svc/synthtune-controller", f"{port}:50051")
    assert "kubectl port-forward: unable to listen" in json.loads(state[0].read_text())["errors"][0]
