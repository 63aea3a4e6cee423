"""Stages run on their gRPC stage services: real servers on loopback, artifacts in S3 on moto."""

from __future__ import annotations

import threading
import time

import pytest

from synthtune.controller import Executor, RunBook
from synthtune.controller.config import ControllerConfig
from synthtune.controller.grpc_runner import GrpcRunner
from synthtune.controller.runner import StageTask
from synthtune.errors import RetryableError
from synthtune.progress import Progress
from synthtune.rpc.gen.synthtune.v1 import operations_pb2, stages_pb2, stages_pb2_grpc
from synthtune.rpc.operations import OperationManager
from synthtune.rpc.server import build_server
from synthtune.rpc.stages import stage_bindings
from synthtune.spec import load_spec_text
from synthtune.store import open_store

from .fakes import SPEC, calls, make_stages

pytestmark = pytest.mark.integration
TOKEN = "stage-t0ken"
KINDS = {"prepare": "dataprep", "generate": "generator", "train": "trainer", "evaluate": "evaluator"}


@pytest.fixture
def services(tmp_path, monkeypatch):
    """The four stage services on one loopback server, running the fake stages; yields a factory of executors."""
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    count = tmp_path / "calls.txt"
    holder: dict[str, object] = {"fail": {}}

    def stage(kind: str):
        def call(*args, **kwargs):
            fakes = make_stages(count, sleep_s=holder.get("sleep_s", 0.0), fail=holder["fail"])  # type: ignore[arg-type]
            return fakes[kind](*args, **kwargs)

        return call

    ops = OperationManager(max_concurrent=4)
    running = build_server(stage_bindings(list(KINDS.values()), ops, {svc: stage(kind) for kind, svc in KINDS.items()}),
                           port=0, host="127.0.0.1", token=TOKEN)
    target = f"127.0.0.1:{running.port}"
    runner = GrpcRunner({k: target for k in KINDS}, token=TOKEN, watch_window_s=0.5)

    def make(store, **kw):
        holder.update(kw)
        config = ControllerConfig(runners=dict.fromkeys(KINDS, "grpc"), services={k: target for k in KINDS}, poll_s=0.05)
        # The report is written by the controller itself; the fake keeps it cheap.
        return Executor(store, RunBook(store), {"report": make_stages(count)["report"]}, backoff_s=0.01, config=config,
                        runners={"grpc": runner})

    yield make, count, ops, runner, target
    running.stop(0)
    ops.shutdown()


def _submit(book):
    return book.create(load_spec_text(SPEC), SPEC, None).run_id


def test_a_run_through_the_stage_services_writes_its_artifacts_to_s3(services, s3_store_uri):
    make, count, _, _, _ = services
    store = open_store(s3_store_uri)
    ex = make(store)
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "succeeded", record.error
    assert calls(count) == ["prepare", "generate:record_qa", "generate:persona", "train:record_qa", "train:persona", "evaluate", "report"]
    for name, info in record.stages.items():
        if name != "report":
            assert info.artifact["uri"].startswith(s3_store_uri), info
            assert store.find(info.artifact["id"]) is not None
            assert "handle" not in info  # the operation's name is dropped once the stage is done
    assert any(ev["type"] == "progress" and ev["stage"] == "prepare" for ev in record.events)


def test_a_stage_that_rejects_its_input_fails_the_run_with_its_own_message(services, file_store):
    make, count, _, _, _ = services
    ex = make(file_store, fail={"generate:persona": "permanent"})
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "failed" and record.error_kind == "invalid_input"
    assert "records.csv:7: column 'Action' is empty" in record.error
    assert "train:persona" not in calls(count)


def test_a_retryable_fault_in_a_service_is_retried(services, file_store):
    make, _, _, _, _ = services
    ex = make(file_store, fail={"train:record_qa": "retry-once"})
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "succeeded"
    assert record.stages["train:record_qa"].attempts == 2


def test_cancelling_the_run_cancels_the_operation_in_the_service(services, file_store):
    make, count, ops, _, _ = services
    ex = make(file_store, sleep_s=10.0)
    run_id = _submit(ex.runbook)
    result = {}
    worker = threading.Thread(target=lambda: result.update(record=ex.execute(run_id)))
    worker.start()
    deadline = time.time() + 10
    while time.time() < deadline and not ex.runbook.load(run_id).stages["prepare"].handle:
        time.sleep(0.02)
    # The operation's name is in the run record (so a restarted controller can follow it).
    operation = ex.runbook.load(run_id).stages["prepare"].handle["operation"]
    ex.cancel(run_id)
    worker.join(timeout=15)
    assert result["record"].status == "cancelled"
    assert ops.wait(operation, timeout=10).state == operations_pb2.OPERATION_STATE_CANCELLED


def test_a_restarted_controller_follows_the_operation_instead_of_starting_again(services, file_store):
    make, count, _, runner, target = services
    make(file_store)  # sets the fakes up
    spec = load_spec_text(SPEC)
    from synthtune.rpc.client import channel

    stub = stages_pb2_grpc.DataPrepServiceStub(channel(target, token=TOKEN))
    op = stub.Prepare(stages_pb2.PrepareRequest(spec_yaml=SPEC, store_uri=file_store.uri, run_id="r1"), timeout=10).operation
    task = StageTask(run_id="r1", stage="prepare", spec=spec, spec_yaml=SPEC, base_dir=None, inputs={},
                     handle={"operation": op.name, "target": target})
    ref = runner.run(task, file_store, Progress("prepare"))
    assert ref.kind == "prepared" and file_store.find(ref.id) is not None
    assert calls(count) == ["prepare"]  # the operation started before the "restart", nothing else


def test_an_unreachable_service_is_a_retryable_fault(file_store, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{sock.getsockname()[1]}"
    runner = GrpcRunner({"prepare": target}, token=TOKEN, start_timeout_s=0.5)
    task = StageTask(run_id="r1", stage="prepare", spec=load_spec_text(SPEC), spec_yaml=SPEC, base_dir=None, inputs={})
    with pytest.raises(RetryableError, match=r"dataprep service at 127\.0\.0\.1:\d+"):
        runner.run(task, file_store, Progress("prepare"))


def test_a_stage_with_nothing_to_do_is_skipped_through_the_service(services, file_store):
    make, count, _, _, _ = services
    ex = make(file_store, fail={"train:persona": "skip"})
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "succeeded", record.error
    assert record.stages["train:persona"].state == "skipped"
    assert "no usable examples" in record.stages["train:persona"].message
