"""Real gRPC servers on loopback: health, reflection, auth, error mapping, operations, metrics."""

from __future__ import annotations

import threading
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from synthtune.errors import InvalidInput, NotFound, RetryableError
from synthtune.rpc.client import channel
from synthtune.rpc.gen.synthtune.v1 import operations_pb2, operations_pb2_grpc, stages_pb2, stages_pb2_grpc
from synthtune.rpc.operations import OperationManager
from synthtune.rpc.server import ServerOptions, build_server
from synthtune.rpc.stages import stage_bindings
from synthtune.store import ArtifactRef

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"
SPEC = "version: 1\nname: t\nsource: {paths: [a.csv]}\n"
State = operations_pb2.OperationState


class Behaviour:
    """A fake prepare stage whose behaviour each test sets."""

    def __init__(self) -> None:
        self.raise_exc: BaseException | None = None
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, spec, inputs, store, progress):
        progress.start(2, "fake prepare")
        progress.advance(1)
        while not self.gate.wait(0.05):
            progress.check_cancelled()
        if self.raise_exc is not None:
            raise self.raise_exc
        progress.advance(1)
        return ArtifactRef("prepared", "prepared-abc", "file:///x/artifacts/prepared-abc")


@pytest.fixture
def stage():
    return Behaviour()


@pytest.fixture
def server(stage, tmp_path):
    ops = OperationManager()
    running = build_server(
        stage_bindings(["dataprep", "generator"], ops, {"dataprep": stage}),
        ServerOptions(port=0, host="127.0.0.1", token=TOKEN, metrics_port=0),
    )
    yield running, str(tmp_path / "store")
    stage.gate.set()
    running.stop(0)
    ops.shutdown()


def _target(server):
    return f"127.0.0.1:{server[0].port}"


def _prepare(server, token=TOKEN, timeout=10):
    stub = stages_pb2_grpc.DataPrepServiceStub(channel(_target(server), token=token))
    return stub.Prepare(stages_pb2.PrepareRequest(spec_yaml=SPEC, store_uri=server[1]), timeout=timeout)


def _wait(server, name):
    ops = operations_pb2_grpc.OperationsServiceStub(channel(_target(server), token=TOKEN))
    updates = list(ops.WatchOperation(operations_pb2.WatchOperationRequest(name=name), timeout=20))
    return updates


def test_health_is_serving_without_token(server):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(_target(server)))
    for service in ["", "synthtune.v1.DataPrepService", "synthtune.v1.OperationsService"]:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(server):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(_target(server)))
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"synthtune.v1.DataPrepService", "synthtune.v1.GeneratorService", "synthtune.v1.OperationsService", "grpc.health.v1.Health"} <= names


def test_call_without_or_with_wrong_token_is_unauthenticated(server):
    for token in ["", "wrong"]:
        with pytest.raises(grpc.RpcError) as exc:
            _prepare(server, token=token)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_operation_runs_to_success_and_is_watched(server):
    op = _prepare(server).operation
    assert op.name.startswith("operations/prepare-")
    updates = _wait(server, op.name)
    assert updates[-1].operation.state == State.OPERATION_STATE_SUCCEEDED
    assert updates[-1].operation.result.id == "prepared-abc"
    assert (updates[-1].operation.progress.completed, updates[-1].operation.progress.total) == (2, 2)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidInput("bad.csv:3: column 'X' missing"), "INVALID_ARGUMENT"),
        (NotFound("no such run"), "NOT_FOUND"),
        (RetryableError("teacher busy"), "UNAVAILABLE"),
        (RuntimeError("secret internal path /etc/x"), "INTERNAL"),
    ],
)
def test_stage_errors_arrive_with_the_right_code(server, stage, exc, code):
    stage.raise_exc = exc
    op = _prepare(server).operation
    final = _wait(server, op.name)[-1].operation
    assert final.state == State.OPERATION_STATE_FAILED
    assert final.error.code == code
    if code == "INTERNAL":
        assert "secret" not in final.error.message and final.error.error_id
    else:
        assert str(exc).split(":")[0] in final.error.message


def test_bad_spec_is_invalid_argument_listing_problems(server):
    stub = stages_pb2_grpc.DataPrepServiceStub(channel(_target(server), token=TOKEN))
    with pytest.raises(grpc.RpcError) as exc:
        stub.Prepare(stages_pb2.PrepareRequest(spec_yaml="version: 9\nname: t\n", store_uri=server[1]), timeout=5)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request.spec_yaml:1:1: version" in exc.value.details()
    assert "source: required key is missing" in exc.value.details()


def test_unknown_operation_is_not_found(server):
    ops = operations_pb2_grpc.OperationsServiceStub(channel(_target(server), token=TOKEN))
    with pytest.raises(grpc.RpcError) as exc:
        ops.GetOperation(operations_pb2.GetOperationRequest(name="operations/nope"), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_cancel_stops_a_running_operation(server, stage):
    stage.gate.clear()
    op = _prepare(server).operation
    ops = operations_pb2_grpc.OperationsServiceStub(channel(_target(server), token=TOKEN))
    ops.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), timeout=5)
    final = _wait(server, op.name)[-1].operation
    assert final.state == State.OPERATION_STATE_CANCELLED
    assert final.error.code == "CANCELLED"


def test_deadline_is_honoured_on_watch(server, stage):
    stage.gate.clear()
    op = _prepare(server).operation
    ops = operations_pb2_grpc.OperationsServiceStub(channel(_target(server), token=TOKEN))
    with pytest.raises(grpc.RpcError) as exc:
        list(ops.WatchOperation(operations_pb2.WatchOperationRequest(name=op.name), timeout=0.5))
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_metrics_port_serves_prometheus_text(server):
    _prepare(server)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server[0].metrics_port}/metrics", timeout=5).read().decode()
    assert 'synthtune_grpc_requests_total{code="OK",method="/synthtune.v1.DataPrepService/Prepare"}' in text


def test_server_refuses_to_start_without_a_token(monkeypatch):
    monkeypatch.delenv("SYNTHTUNE_AUTH_TOKEN", raising=False)
    with pytest.raises(InvalidInput, match="refusing to start without a token"):
        build_server([], ServerOptions(port=0, host="127.0.0.1"))
    running = build_server([], ServerOptions(port=0, host="127.0.0.1", insecure=True))
    running.stop(0)
