"""Stage servicers over real gRPC: each unpacks its request, runs the (fake) stage as an operation."""

from __future__ import annotations

import re

import grpc
import pytest
from rpc_helpers import SPEC, TOKEN, make_artifact

from synthtune.errors import Cancelled, InvalidInput, NotFound, RetryableError
from synthtune.rpc.gen.synthtune.v1 import (
    common_pb2,
    operations_pb2,
    operations_pb2_grpc,
    stages_pb2,
    stages_pb2_grpc,
)
from synthtune.store import open_store

pytestmark = pytest.mark.integration
State = operations_pb2.OperationState


def _msg(ref):
    return common_pb2.ArtifactRef(kind=ref.kind, id=ref.id, uri=ref.uri)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    return open_store(str(tmp_path / "store"))


def _prepare(server, store, token=TOKEN, **fields):
    stub = stages_pb2_grpc.DataPrepServiceStub(server.channel(token))
    request = stages_pb2.PrepareRequest(**{"spec_yaml": SPEC, "store_uri": store.uri, "run_id": "run-7", **fields})
    return stub.Prepare(request, timeout=10).operation


def _watch(server, name, timeout=20):
    ops = operations_pb2_grpc.OperationsServiceStub(server.channel())
    return [u.operation for u in ops.WatchOperation(operations_pb2.WatchOperationRequest(name=name), timeout=timeout)]


def test_prepare_runs_the_stage_and_is_watched_to_completion(server, store):
    op = _prepare(server, store)
    assert op.name.startswith("operations/prepare-") and op.run_id == "run-7" and op.stage == "prepare"
    updates = _watch(server, op.name)
    final = updates[-1]
    assert final.state == State.OPERATION_STATE_SUCCEEDED and final.result.id == "prepared-abc"
    assert (final.progress.completed, final.progress.total, final.progress.description) == (2, 2, "fake prepared")
    [call] = server.fakes["dataprep"].calls
    assert call["spec"].name == "t" and call["inputs"] == {} and call["store"].uri == store.uri


def test_get_operation_matches_the_watch(server, store):
    op = _prepare(server, store)
    final = _watch(server, op.name)[-1]
    ops = operations_pb2_grpc.OperationsServiceStub(server.channel())
    got = ops.GetOperation(operations_pb2.GetOperationRequest(name=op.name), timeout=5).operation
    assert got == final


def test_generate_and_train_pass_method_and_checked_inputs(server, store):
    prepared, synthetic = make_artifact(store, "prepared"), make_artifact(store, "synthetic")
    stub = stages_pb2_grpc.GeneratorServiceStub(server.channel())
    op = stub.Generate(stages_pb2.GenerateRequest(spec_yaml=SPEC, store_uri=store.uri, method="fm", prepared=_msg(prepared)), timeout=5).operation
    assert op.stage == "generate:fm" and _watch(server, op.name)[-1].state == State.OPERATION_STATE_SUCCEEDED
    [call] = server.fakes["generator"].calls
    assert call["method"] == "fm" and call["inputs"]["prepared"].id == prepared.id
    assert call["inputs"]["prepared"].uri.endswith(f"/artifacts/{prepared.id}")

    stub = stages_pb2_grpc.TrainerServiceStub(server.channel())
    op = stub.Train(stages_pb2.TrainRequest(spec_yaml=SPEC, store_uri=store.uri, method="record_qa",
                                            synthetic=_msg(synthetic), prepared=_msg(prepared)), timeout=5).operation
    assert _watch(server, op.name)[-1].result.kind == "adapter"
    [call] = server.fakes["trainer"].calls
    assert call["method"] == "record_qa" and {k: v.id for k, v in call["inputs"].items()} == {"synthetic": synthetic.id, "prepared": prepared.id}


def test_evaluate_gets_prepared_and_every_adapter(server, store):
    prepared = make_artifact(store, "prepared")
    a1, a2 = make_artifact(store, "adapter", "a1"), make_artifact(store, "adapter", "a2")
    stub = stages_pb2_grpc.EvaluatorServiceStub(server.channel())
    op = stub.Evaluate(stages_pb2.EvaluateRequest(spec_yaml=SPEC, store_uri=store.uri, prepared=_msg(prepared),
                                                  adapters={"record_qa": _msg(a1), "fm": _msg(a2)}), timeout=5).operation
    assert _watch(server, op.name)[-1].state == State.OPERATION_STATE_SUCCEEDED
    [call] = server.fakes["evaluator"].calls
    assert {k: v.id for k, v in call["inputs"].items()} == {"prepared": prepared.id, "adapter:record_qa": a1.id, "adapter:fm": a2.id}


def test_spec_can_come_from_the_store(server, store):
    store.put_text("runs/run-7/pipeline.yaml", SPEC)
    op = _prepare(server, store, spec_yaml="", spec_key="runs/run-7/pipeline.yaml")
    assert _watch(server, op.name)[-1].state == State.OPERATION_STATE_SUCCEEDED
    with pytest.raises(grpc.RpcError) as exc:
        _prepare(server, store, spec_yaml="", spec_key="runs/none/pipeline.yaml")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("fields", "code", "text"), [
    ({"spec_yaml": ""}, grpc.StatusCode.INVALID_ARGUMENT, "carries no pipeline spec"),
    ({"spec_yaml": "version: 9\nname: t\n"}, grpc.StatusCode.INVALID_ARGUMENT, "request.spec_yaml:1:1: version"),
    ({"spec_yaml": "version: 1\nname: t\nsource: {paths: [a.csv]}\ntrain: {max_steps: zero}\n"}, grpc.StatusCode.INVALID_ARGUMENT, "request.spec_yaml:4:"),
    ({"store_uri": "ftp://nowhere/x"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown scheme"),
])
def test_a_bad_prepare_request_fails_the_call(server, store, fields, code, text):
    with pytest.raises(grpc.RpcError) as exc:
        _prepare(server, store, **fields)
    assert exc.value.code() == code and text in exc.value.details()
    assert not server.fakes["dataprep"].calls


def test_bad_inputs_fail_the_call_not_the_operation(server, store):
    stub = stages_pb2_grpc.GeneratorServiceStub(server.channel())
    prepared = make_artifact(store, "prepared")
    synthetic = make_artifact(store, "synthetic")
    cases = [
        (dict(method="nope", prepared=_msg(prepared)), grpc.StatusCode.INVALID_ARGUMENT, "method 'nope' is not in the spec's generate.methods (known: record_qa, fm)"),
        (dict(method="fm"), grpc.StatusCode.INVALID_ARGUMENT, "prepared: a prepared artifact reference is required"),
        (dict(method="fm", prepared=_msg(synthetic)), grpc.StatusCode.INVALID_ARGUMENT, "is a 'synthetic' artifact, expected 'prepared'"),
        (dict(method="fm", prepared=common_pb2.ArtifactRef(kind="prepared", id="prepared-missing")), grpc.StatusCode.NOT_FOUND, "artifact prepared-missing is not in store"),
        (dict(method="fm", prepared=common_pb2.ArtifactRef(id="../../etc")), grpc.StatusCode.INVALID_ARGUMENT, ""),
    ]
    for fields, code, text in cases:
        with pytest.raises(grpc.RpcError) as exc:
            stub.Generate(stages_pb2.GenerateRequest(spec_yaml=SPEC, store_uri=store.uri, **fields), timeout=5)
        assert exc.value.code() == code, fields
        assert text in exc.value.details()
    assert not server.fakes["generator"].calls


@pytest.mark.parametrize(("exc", "code"), [
    (InvalidInput("a.csv:3: column 'X' missing", ["a.csv:3: column 'X' missing"]), "INVALID_ARGUMENT"),
    (NotFound("no such model smollm9"), "NOT_FOUND"),
    (RetryableError("teacher busy"), "UNAVAILABLE"),
    (Cancelled("stopped by the user"), "CANCELLED"),
    (RuntimeError("secret internal path /etc/x"), "INTERNAL"),
])
def test_stage_errors_arrive_with_the_right_code(server, store, exc, code):
    server.fakes["dataprep"].raise_exc = exc
    final = _watch(server, _prepare(server, store).name)[-1]
    assert final.state == (State.OPERATION_STATE_CANCELLED if code == "CANCELLED" else State.OPERATION_STATE_FAILED)
    assert final.error.code == code
    if code == "INTERNAL":
        assert "secret" not in final.error.message and final.error.error_id in final.error.message
    else:
        assert str(exc).splitlines()[0] in final.error.message


def test_cancel_stops_a_running_operation(server, store):
    fake = server.fakes["dataprep"]
    fake.gate.clear()
    op = _prepare(server, store)
    assert fake.started.wait(5)
    ops = operations_pb2_grpc.OperationsServiceStub(server.channel())
    ops.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), timeout=5)
    final = _watch(server, op.name)[-1]
    assert final.state == State.OPERATION_STATE_CANCELLED and final.error.code == "CANCELLED"


def test_a_watch_past_its_deadline_ends_but_the_operation_goes_on(server, store):
    fake = server.fakes["dataprep"]
    fake.gate.clear()
    op = _prepare(server, store)
    with pytest.raises(grpc.RpcError) as exc:
        _watch(server, op.name, timeout=0.3)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    fake.gate.set()
    assert _watch(server, op.name)[-1].state == State.OPERATION_STATE_SUCCEEDED


def test_operation_rpcs_need_the_token(server, store):
    op = _prepare(server, store)
    ops = operations_pb2_grpc.OperationsServiceStub(server.channel(token=""))
    for call in [lambda: ops.GetOperation(operations_pb2.GetOperationRequest(name=op.name), timeout=5),
                 lambda: list(ops.WatchOperation(operations_pb2.WatchOperationRequest(name=op.name), timeout=5)),
                 lambda: ops.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), timeout=5)]:
        with pytest.raises(grpc.RpcError) as exc:
            call()
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as exc:
        _prepare(server, store, token="wrong")
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_operation_is_not_found(server):
    ops = operations_pb2_grpc.OperationsServiceStub(server.channel())
    with pytest.raises(grpc.RpcError) as exc:
        ops.GetOperation(operations_pb2.GetOperationRequest(name="operations/nope"), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_logs_of_the_call_and_its_operation_carry_the_run_id(server, store, json_logs):
    _watch(server, _prepare(server, store).name)
    entries = json_logs()
    messages = {e["message"] for e in entries if e.get("run_id") == "run-7"}
    assert {"rpc", "operation started", "operation finished"} <= messages
    finished = next(e for e in entries if e["message"] == "operation finished" and e.get("run_id") == "run-7")
    assert finished["state"] == "OPERATION_STATE_SUCCEEDED" and finished["request_id"]


def test_metrics_count_stage_calls(server, store):
    import urllib.request

    _prepare(server, store)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.running.metrics_port}/metrics", timeout=5).read().decode()
    assert 'synthtune_grpc_requests_total{code="OK",method="/synthtune.v1.DataPrepService/Prepare"}' in text


def test_reflection_and_health_cover_every_stage_service(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    insecure = grpc.insecure_channel(server.target)
    services = ["synthtune.v1.DataPrepService", "synthtune.v1.GeneratorService", "synthtune.v1.TrainerService",
                "synthtune.v1.EvaluatorService", "synthtune.v1.OperationsService"]
    health = health_pb2_grpc.HealthStub(insecure)
    for name in services:
        assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel())  # reflection needs the token (grpcurl -H)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="synthtune.v1.TrainerService")]
    replies = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
    assert set(services) <= {s.name for s in replies[0].list_services_response.service}
    assert replies[1].file_descriptor_response.file_descriptor_proto  # grpcurl can describe the service


def test_no_operation_starts_for_a_call_that_already_ended(server):
    from synthtune.rpc.stages import _start

    class Gone:
        def is_active(self) -> bool:
            return False

    before = len(server.ops._ops)
    with pytest.raises(Cancelled, match="before the operation started"):
        _start(server.ops, Gone(), "prepare", "run-1", lambda p: None)  # type: ignore[arg-type]
    assert len(server.ops._ops) == before


def test_server_policy_pins_store_and_base_folder_and_refuses_remote_code(server, store, tmp_path, monkeypatch):
    """The token runs stages; it does not choose the server's folders, store or remote model code."""
    other = open_store(str(tmp_path / "other-store"))
    allowed = tmp_path / "data"
    allowed.mkdir()
    monkeypatch.setenv("SYNTHTUNE_SERVE_STORE", store.uri)
    monkeypatch.setenv("SYNTHTUNE_SERVE_BASE_DIR", str(allowed))
    refused = [
        ({"store_uri": other.uri}, "only uses its own store"),
        ({"base_dir": "/etc"}, "base_dir '/etc' is outside this server's folder"),
        ({"spec_yaml": SPEC.replace("paths: [a.csv]", "paths: [../../etc/passwd]")}, "source.paths '../../etc/passwd' is outside"),
        ({"spec_yaml": SPEC.replace("paths: [a.csv]", "paths: [/etc/passwd]")}, "source.paths '/etc/passwd' is outside"),
        ({"spec_yaml": SPEC + "train: {trust_remote_code: true}\n"}, "trust_remote_code is refused by this server"),
        ({"spec_yaml": SPEC + "evaluate: {sets: [{name: exam, path: /etc/exam.csv}]}\n"}, "evaluate.sets[exam].path '/etc/exam.csv' is outside"),
        ({"spec_yaml": SPEC + "evaluate: {sets: [{name: exam, path: ../exam.csv}]}\n"}, "evaluate.sets[exam].path '../exam.csv' is outside"),
        ({"spec_yaml": SPEC.replace("paths: [a.csv]", "paths: ['s3://other/a.csv']")}, "source.paths 's3://other/a.csv' is outside this server's store"),
    ]
    for fields, message in refused:
        with pytest.raises(grpc.RpcError) as err:
            _prepare(server, store, **fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details(), fields
    assert server.fakes["dataprep"].calls == []
    op = _prepare(server, store, store_uri="")  # an empty store_uri means the server's store
    assert _watch(server, op.name)[-1].state == State.OPERATION_STATE_SUCCEEDED
    [call] = server.fakes["dataprep"].calls
    assert call["store"].uri == store.uri and call["spec"].base_dir == str(allowed.resolve())


def test_s3_sources_and_sets_must_lie_in_the_servers_store():
    """Without a server store any s3:// URI is the client's choice; with one, only objects inside it."""
    from synthtune.rpc.policy import ServerPolicy
    from synthtune.spec.loader import load_spec_text

    def spec(source: str, exam: str):  # type: ignore[no-untyped-def]
        return load_spec_text(f"version: 1\nname: t\nsource: {{paths: ['{source}']}}\nevaluate: {{sets: [{{name: exam, path: '{exam}'}}]}}\n", "t")

    inside = spec("s3://b/st/sources/a.csv", "s3://b/st/sets/exam.csv")
    assert ServerPolicy().check_spec(spec("s3://x/a.csv", "s3://y/e.csv"), "spec") is not None
    assert ServerPolicy(store="s3://b/st").check_spec(inside, "spec") is inside
    for source, exam, what in [("s3://b/other/a.csv", "s3://b/st/sets/exam.csv", "source.paths 's3://b/other/a.csv'"),
                               ("s3://b/st/a.csv", "s3://b/stx/exam.csv", "evaluate.sets[exam].path 's3://b/stx/exam.csv'"),
                               ("s3://b/st/../a.csv", "s3://b/st/e.csv", "source.paths 's3://b/st/../a.csv'")]:
        with pytest.raises(InvalidInput, match=re.escape(what) + " is outside this server's store s3://b/st"):
            ServerPolicy(store="s3://b/st").check_spec(spec(source, exam), "spec")


def test_remote_code_is_allowed_only_when_the_server_says_so(server, store, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_ALLOW_REMOTE_CODE", "1")
    op = _prepare(server, store, spec_yaml=SPEC + "train: {trust_remote_code: true}\n")
    assert _watch(server, op.name)[-1].state == State.OPERATION_STATE_SUCCEEDED
