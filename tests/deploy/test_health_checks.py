"""The health checks we ship, run for real against a grpc.health.v1 server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from deploy_helpers import REPO, by_kind, rendered_variant
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

pytestmark = pytest.mark.integration
SERVICE = "synthtune.v1.PipelineService"


@pytest.fixture
def health_server():
    """A gRPC server with only the health service, on a free loopback port; yields (port, servicer)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None)


def set_status(servicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    servicer.set("", status)
    servicer.set(SERVICE, status)


def dockerfile_health_command(name: str) -> list[str]:
    text = (REPO / name).read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK"))
    return json.loads(line[line.index("CMD") + 3:].strip())


@pytest.mark.parametrize("dockerfile", ["Dockerfile.generator", "Dockerfile.trainer", "Dockerfile.evaluator"])
def test_dockerfile_healthcheck_follows_serving_status(dockerfile, health_server):
    port, servicer = health_server
    cmd = [sys.executable, *dockerfile_health_command(dockerfile)[1:]]
    env = {**os.environ, "SYNTHTUNE_HEALTH_PORT": str(port)}
    set_status(servicer, True)
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0
    set_status(servicer, False)
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 1


def test_helm_test_hook_passes_only_when_the_controller_serves(health_server):
    port, servicer = health_server
    (pod,) = by_kind(rendered_variant("default-values"), "Pod")
    container = pod["spec"]["containers"][0]
    script, _target, service, _wait = container["args"]
    assert container["command"] == ["python", "-c"]
    run = lambda: subprocess.run([sys.executable, "-c", script, f"127.0.0.1:{port}", service, "0"],  # noqa: E731
                                 capture_output=True, text=True, timeout=60)
    set_status(servicer, True)
    ok = run()
    assert ok.returncode == 0 and f"{SERVICE}: SERVING" in ok.stdout
    set_status(servicer, False)
    bad = run()
    assert bad.returncode == 1 and "NOT_SERVING" in bad.stdout


def test_helm_test_hook_reports_an_unreachable_controller():
    (pod,) = by_kind(rendered_variant("default-values"), "Pod")
    script = pod["spec"]["containers"][0]["args"][0]
    probe = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # a gRPC server without the health service
    port = probe.add_insecure_port("127.0.0.1:0")
    probe.start()
    try:
        out = subprocess.run([sys.executable, "-c", script, f"127.0.0.1:{port}", SERVICE, "0"],
                             capture_output=True, text=True, timeout=60)
    finally:
        probe.stop(grace=None)
    assert out.returncode == 1 and "UNIMPLEMENTED" in out.stdout
