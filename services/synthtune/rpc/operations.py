"""Long-running operations: a stage call runs in a worker thread; clients get, watch or cancel it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from synthtune.errors import Cancelled, InvalidInput, NotFound, RetryableError
from synthtune.progress import Progress, ProgressEvent
from synthtune.rpc.errors import status_for
from synthtune.rpc.gen.synthtune.v1 import common_pb2, operations_pb2, operations_pb2_grpc
from synthtune.store import ArtifactRef

State = operations_pb2.OperationState
DONE = {State.OPERATION_STATE_SUCCEEDED, State.OPERATION_STATE_FAILED, State.OPERATION_STATE_CANCELLED}


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def progress_message(event: ProgressEvent | None) -> common_pb2.ProgressEvent:
    if event is None:
        return common_pb2.ProgressEvent()
    ts = Timestamp()
    ts.FromNanoseconds(int(event.time * 1e9))
    return common_pb2.ProgressEvent(
        stage=event.stage, description=event.description, completed=event.completed,
        total=event.total or 0.0, message=event.message, time=ts,
    )


def artifact_message(ref: ArtifactRef | None) -> common_pb2.ArtifactRef:
    return common_pb2.ArtifactRef(kind=ref.kind, id=ref.id, uri=ref.uri) if ref else common_pb2.ArtifactRef()


def artifact_ref(msg: common_pb2.ArtifactRef) -> ArtifactRef | None:
    return ArtifactRef(msg.kind, msg.id, msg.uri) if msg.id else None


def error_info(exc: BaseException) -> common_pb2.ErrorInfo:
    code, message, error_id = status_for(exc)
    problems = exc.problems if isinstance(exc, InvalidInput) else []
    return common_pb2.ErrorInfo(
        code=code.name, message=message, problems=problems, retryable=isinstance(exc, RetryableError), error_id=error_id
    )


@dataclass
class _Op:
    name: str
    stage: str
    progress: Progress
    state: int = State.OPERATION_STATE_QUEUED
    last_event: ProgressEvent | None = None
    result: ArtifactRef | None = None
    error: common_pb2.ErrorInfo | None = None
    created: Timestamp = field(default_factory=_now)
    updated: Timestamp = field(default_factory=_now)
    version: int = 0


class OperationManager:
    """Runs stage calls in a bounded pool and keeps their state in memory for this server."""

    def __init__(self, max_concurrent: int = 2) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="synthtune-op")
        self._ops: dict[str, _Op] = {}
        self._cond = threading.Condition()

    def start(self, stage: str, work: Callable[[Progress], ArtifactRef]) -> operations_pb2.Operation:
        op = _Op(name=f"operations/{stage}-{uuid.uuid4().hex[:12]}", stage=stage, progress=Progress(stage))
        op.progress.add_listener(lambda event: self._update(op, event=event))
        with self._cond:
            self._ops[op.name] = op
        self._pool.submit(self._run, op, work)
        return self.get(op.name)

    def _update(self, op: _Op, **changes: Any) -> None:
        with self._cond:
            if "event" in changes:
                op.last_event = changes.pop("event")
            for key, value in changes.items():
                setattr(op, key, value)
            op.updated = _now()
            op.version += 1
            self._cond.notify_all()

    def _run(self, op: _Op, work: Callable[[Progress], ArtifactRef]) -> None:
        if op.progress.cancelled:
            self._update(op, state=State.OPERATION_STATE_CANCELLED, error=error_info(Cancelled("cancelled before it started")))
            return
        self._update(op, state=State.OPERATION_STATE_RUNNING)
        try:
            result = work(op.progress)
        except Cancelled as exc:
            self._update(op, state=State.OPERATION_STATE_CANCELLED, error=error_info(exc))
        except BaseException as exc:  # every failure is reported through the operation
            self._update(op, state=State.OPERATION_STATE_FAILED, error=error_info(exc))
        else:
            self._update(op, state=State.OPERATION_STATE_SUCCEEDED, result=result)

    def _find(self, name: str) -> _Op:
        op = self._ops.get(name)
        if op is None:
            raise NotFound(f"no operation named {name!r} on this server")
        return op

    def _message(self, op: _Op) -> operations_pb2.Operation:
        msg = operations_pb2.Operation(
            name=op.name, stage=op.stage, state=op.state,  # type: ignore[arg-type]
            progress=progress_message(op.last_event),
            create_time=op.created, update_time=op.updated,
        )
        if op.result is not None:
            msg.result.CopyFrom(artifact_message(op.result))
        if op.error is not None:
            msg.error.CopyFrom(op.error)
        return msg

    def get(self, name: str) -> operations_pb2.Operation:
        with self._cond:
            return self._message(self._find(name))

    def cancel(self, name: str) -> operations_pb2.Operation:
        with self._cond:
            op = self._find(name)
        op.progress.cancel()
        if op.state == State.OPERATION_STATE_QUEUED:
            self._update(op, state=State.OPERATION_STATE_CANCELLED, error=error_info(Cancelled("cancelled before it started")))
        return self.get(name)

    def watch(self, name: str, is_active: Callable[[], bool] = lambda: True, poll_s: float = 0.5) -> Iterator[operations_pb2.Operation]:
        """Yield the operation whenever it changes, until it is done or the client goes away."""
        seen = -1
        while is_active():
            with self._cond:
                op = self._find(name)
                if op.version == seen:
                    self._cond.wait(timeout=poll_s)
                    continue
                seen = op.version
                message = self._message(op)
            yield message
            if message.state in DONE:
                return

    def wait(self, name: str, timeout: float | None = None) -> operations_pb2.Operation:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._find(name).state not in DONE:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(timeout=remaining)
        return self.get(name)

    def shutdown(self) -> None:
        for op in list(self._ops.values()):
            op.progress.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):  # type: ignore[misc]
    def __init__(self, manager: OperationManager) -> None:
        self.manager = manager

    def GetOperation(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return operations_pb2.GetOperationResponse(operation=self.manager.get(request.name))

    def WatchOperation(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:  # noqa: N802
        for op in self.manager.watch(request.name, context.is_active):
            yield operations_pb2.WatchOperationResponse(operation=op)

    def CancelOperation(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return operations_pb2.CancelOperationResponse(operation=self.manager.cancel(request.name))
