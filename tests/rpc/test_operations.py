"""OperationManager on its own: states, events, errors, cancel, retention, context."""

from __future__ import annotations

import threading
import time

import pytest

from synthtune.errors import InvalidInput, NotFound, RetryableError
from synthtune.progress import Progress
from synthtune.rpc.gen.synthtune.v1 import operations_pb2
from synthtune.rpc.logs import run_id_var
from synthtune.rpc.operations import OperationManager
from synthtune.store import ArtifactRef

State = operations_pb2.OperationState
REF = ArtifactRef("prepared", "prepared-1", "file:///s/artifacts/prepared-1")


@pytest.fixture
def manager():
    ops = OperationManager(max_concurrent=1)
    yield ops
    ops.shutdown()


def _gated(gate: threading.Event, started: threading.Event | None = None):
    def work(progress: Progress) -> ArtifactRef:
        progress.start(3, "gated")
        if started is not None:
            started.set()
        while not gate.wait(0.01):
            progress.check_cancelled()
        progress.advance(3)
        return REF
    return work


def test_success_carries_the_result_and_last_progress(manager):
    def work(progress: Progress) -> ArtifactRef:
        progress.start(4, "counting")
        for _ in range(4):
            progress.advance(1)
        progress.note("all counted")
        return REF

    op = manager.start("prepare", work, run_id="run-1")
    assert op.name.startswith("operations/prepare-") and op.run_id == "run-1"
    done = manager.wait(op.name, timeout=5)
    assert done.state == State.OPERATION_STATE_SUCCEEDED
    assert (done.result.kind, done.result.id, done.result.uri) == (REF.kind, REF.id, REF.uri)
    assert (done.progress.completed, done.progress.total, done.progress.message) == (4, 4, "all counted")
    assert done.update_time.ToNanoseconds() >= done.create_time.ToNanoseconds()
    assert not done.HasField("error")


def test_watch_streams_updates_until_done(manager):
    gate = threading.Event()
    op = manager.start("generate:record_qa", _gated(gate))
    seen = []
    for update in manager.watch(op.name, poll_s=0.05):
        seen.append(update)
        if len(seen) == 1:
            gate.set()
    assert seen[-1].state == State.OPERATION_STATE_SUCCEEDED
    assert seen[0].state in (State.OPERATION_STATE_QUEUED, State.OPERATION_STATE_RUNNING)
    assert len(seen) >= 2 and op.name.startswith("operations/generate-")


@pytest.mark.parametrize(("exc", "code", "retryable"), [
    (InvalidInput("records.csv:4: no 'problem' column", ["records.csv:4: no 'problem' column"]), "INVALID_ARGUMENT", False),
    (NotFound("artifact prepared-9 is gone"), "NOT_FOUND", False),
    (RetryableError("teacher 503", delay=7.5), "UNAVAILABLE", True),
    (RuntimeError("/home/secret/stack detail"), "INTERNAL", False),
    (SystemExit(3), "INTERNAL", False),
])
def test_failures_are_mapped_like_the_interceptor(manager, exc, code, retryable):
    def work(progress: Progress) -> ArtifactRef:
        raise exc

    done = manager.wait(manager.start("train:x", work).name, timeout=5)
    assert done.state == State.OPERATION_STATE_FAILED
    assert (done.error.code, done.error.retryable) == (code, retryable)
    if code == "INTERNAL":
        assert "secret" not in done.error.message and len(done.error.error_id) == 12
    else:
        assert str(exc).splitlines()[0] in done.error.message
    if isinstance(exc, InvalidInput):
        assert list(done.error.problems) == exc.problems
    if isinstance(exc, RetryableError):
        assert done.error.retry_delay_seconds == 7.5


def test_a_stage_returning_no_artifact_fails(manager):
    done = manager.wait(manager.start("prepare", lambda p: None).name, timeout=5)  # type: ignore[arg-type,return-value]
    assert done.state == State.OPERATION_STATE_FAILED and done.error.code == "INTERNAL"


def test_cancel_a_running_operation_sets_its_progress_cancelled(manager):
    gate, started = threading.Event(), threading.Event()
    op = manager.start("prepare", _gated(gate, started))
    assert started.wait(5)
    manager.cancel(op.name)
    done = manager.wait(op.name, timeout=5)
    assert done.state == State.OPERATION_STATE_CANCELLED and done.error.code == "CANCELLED"


def test_cancel_a_queued_operation_ends_it_before_it_runs(manager):
    gate, started = threading.Event(), threading.Event()
    first = manager.start("prepare", _gated(gate, started))
    assert started.wait(5)
    ran = threading.Event()
    queued = manager.start("prepare", lambda p: (ran.set(), REF)[1])
    assert manager.get(queued.name).state == State.OPERATION_STATE_QUEUED
    assert manager.cancel(queued.name).state == State.OPERATION_STATE_CANCELLED
    gate.set()
    assert manager.wait(first.name, timeout=5).state == State.OPERATION_STATE_SUCCEEDED
    time.sleep(0.1)
    assert not ran.is_set() and manager.get(queued.name).state == State.OPERATION_STATE_CANCELLED


def test_a_finished_operation_never_changes(manager):
    op = manager.start("prepare", lambda p: REF)
    assert manager.wait(op.name, timeout=5).state == State.OPERATION_STATE_SUCCEEDED
    after = manager.cancel(op.name)
    assert after.state == State.OPERATION_STATE_SUCCEEDED and after.result.id == REF.id


def test_unknown_operation_is_not_found(manager):
    with pytest.raises(NotFound, match="operations/nope"):
        manager.get("operations/nope")


def test_finished_operations_are_forgotten_after_retention():
    ops = OperationManager(max_concurrent=1, keep_finished_s=3600, max_finished=2)
    try:
        names = [ops.start("prepare", lambda p: REF).name for _ in range(3)]
        for name in names:
            ops.wait(name, timeout=5)
        ops.start("prepare", lambda p: REF)  # starting prunes the oldest beyond max_finished
        with pytest.raises(NotFound):
            ops.get(names[0])
        assert ops.get(names[2]).state == State.OPERATION_STATE_SUCCEEDED
    finally:
        ops.shutdown()


def test_work_runs_with_the_callers_context(manager):
    seen = []
    token = run_id_var.set("run-ctx")
    try:
        op = manager.start("prepare", lambda p: (seen.append(run_id_var.get()), REF)[1])
    finally:
        run_id_var.reset(token)
    manager.wait(op.name, timeout=5)
    assert seen == ["run-ctx"]


def test_shutdown_cancels_running_and_queued_operations():
    ops = OperationManager(max_concurrent=1)
    gate, started = threading.Event(), threading.Event()
    running = ops.start("prepare", _gated(gate, started))
    assert started.wait(5)
    queued = ops.start("prepare", lambda p: REF)
    ops.shutdown()
    assert ops.wait(running.name, timeout=5).state == State.OPERATION_STATE_CANCELLED
    assert ops.get(queued.name).state == State.OPERATION_STATE_CANCELLED
