"""Long-running operations: a stage call runs in a worker thread; clients get, watch or cancel it."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from synthtune.errors import Cancelled, InvalidInput, NotFound, RetryableError
from synthtune.progress import Progress, ProgressEvent
from synthtune.rpc.errors import status_for
from synthtune.rpc.gen.synthtune.v1 import common_pb2, operations_pb2, operations_pb2_grpc
from synthtune.store import ArtifactRef

log = logging.getLogger("synthtune.rpc")
State = operations_pb2.OperationState
DONE = frozenset({State.OPERATION_STATE_SUCCEEDED, State.OPERATION_STATE_FAILED, State.OPERATION_STATE_CANCELLED})
Work = Callable[[Progress], ArtifactRef]


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


def error_info(exc: BaseException) -> common_pb2.ErrorInfo:
    """The client's view of a failure, mapped exactly as the server interceptor maps it."""
    code, message, error_id = status_for(exc)
    return common_pb2.ErrorInfo(
        code=code.name, message=message, problems=exc.problems if isinstance(exc, InvalidInput) else [],
        retryable=isinstance(exc, RetryableError), error_id=error_id,
        retry_delay_seconds=exc.delay if isinstance(exc, RetryableError) else 0.0,
    )


@dataclass
class _Op:
    name: str
    stage: str
    run_id: str
    progress: Progress
    state: int = State.OPERATION_STATE_QUEUED
    last_event: ProgressEvent | None = None
    result: ArtifactRef | None = None
    error: common_pb2.ErrorInfo | None = None
    created: Timestamp = field(default_factory=_now)
    updated: Timestamp = field(default_factory=_now)
    finished_at: float | None = None  # monotonic, for retention
    version: int = 0


class OperationManager:
    """Runs stage calls in a bounded pool and keeps their state in this server's memory.

    Finished operations are kept ``keep_finished_s`` seconds (and at most ``max_finished`` of
    them) so a client that reconnects, or a controller that restarted, can still read the result.
    """

    def __init__(self, max_concurrent: int = 2, keep_finished_s: float = 3600.0, max_finished: int = 1000) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="synthtune-op")
        self._ops: dict[str, _Op] = {}
        self._cond = threading.Condition()
        self.keep_finished_s, self.max_finished = keep_finished_s, max_finished

    def start(self, stage: str, work: Work, run_id: str = "") -> operations_pb2.Operation:
        """Queue ``work(progress)``; returns the new operation at once."""
        kind = stage.split(":", 1)[0]
        op = _Op(name=f"operations/{kind}-{uuid.uuid4().hex[:12]}", stage=stage, run_id=run_id, progress=Progress(stage))
        op.progress.add_listener(lambda event: self._event(op, event))
        with self._cond:
            self._forget_old()
            self._ops[op.name] = op
            message = self._message(op)
        # The worker runs in a copy of the caller's context, so its logs keep the request and run ids.
        self._pool.submit(contextvars.copy_context().run, self._run, op, work)
        return message

    def _event(self, op: _Op, event: ProgressEvent) -> None:
        with self._cond:
            op.last_event = event
            self._touch(op)

    def _touch(self, op: _Op) -> None:
        op.updated = _now()
        op.version += 1
        self._cond.notify_all()

    def _transition(self, op: _Op, state: int, *, expect: frozenset[int] | None = None,
                    result: ArtifactRef | None = None, error: common_pb2.ErrorInfo | None = None) -> bool:
        """Move to ``state`` unless already done (or not in ``expect``); a finished operation never changes."""
        with self._cond:
            if op.state in DONE or (expect is not None and op.state not in expect):
                return False
            op.state, op.result, op.error = state, result, error
            if state in DONE:
                op.finished_at = time.monotonic()
            self._touch(op)
            return True

    def _run(self, op: _Op, work: Work) -> None:
        if not self._transition(op, State.OPERATION_STATE_RUNNING, expect=frozenset({State.OPERATION_STATE_QUEUED})):
            return  # cancelled while queued
        log.info("operation started", extra={"operation": op.name, "stage": op.stage})
        try:
            result = work(op.progress)
            if not isinstance(result, ArtifactRef):
                raise TypeError(f"stage {op.stage} returned {type(result).__name__}, not an ArtifactRef")
        except Cancelled as exc:
            self._transition(op, State.OPERATION_STATE_CANCELLED, error=error_info(exc))
        except BaseException as exc:  # noqa: BLE001 - every failure (even SystemExit from a library) ends the operation
            self._transition(op, State.OPERATION_STATE_FAILED, error=error_info(exc))
        else:
            self._transition(op, State.OPERATION_STATE_SUCCEEDED, result=result)
        log.info("operation finished", extra={"operation": op.name, "stage": op.stage, "state": State.Name(op.state)})

    def _forget_old(self) -> None:
        """Drop finished operations past their retention; called with the lock held."""
        now = time.monotonic()
        finished = sorted((op.finished_at, name) for name, op in self._ops.items() if op.finished_at is not None)
        excess = len(finished) - self.max_finished
        for i, (finished_at, name) in enumerate(finished):
            if i < excess or now - finished_at > self.keep_finished_s:
                del self._ops[name]

    def _find(self, name: str) -> _Op:
        op = self._ops.get(name)
        if op is None:
            raise NotFound(f"no operation named {name!r} on this server (finished ones are kept {self.keep_finished_s:.0f} s)")
        return op

    def _message(self, op: _Op) -> operations_pb2.Operation:
        msg = operations_pb2.Operation(
            name=op.name, stage=op.stage, state=op.state,  # type: ignore[arg-type]
            progress=progress_message(op.last_event), run_id=op.run_id,
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
        """Ask the operation to stop: a queued one is cancelled now, a running one at its next check."""
        with self._cond:
            op = self._find(name)
        op.progress.cancel()
        self._transition(op, State.OPERATION_STATE_CANCELLED, expect=frozenset({State.OPERATION_STATE_QUEUED}),
                         error=error_info(Cancelled(f"{op.stage} cancelled before it started")))
        return self.get(name)

    def watch(self, name: str, is_active: Callable[[], bool] = lambda: True, poll_s: float = 0.5) -> Iterator[operations_pb2.Operation]:
        """Yield the operation whenever it changes, until it is done or the client goes away.

        Updates that arrive faster than the client reads are coalesced: it always gets the latest.
        """
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
        """Block until the operation is done or ``timeout`` passes; returns its state then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._find(name).state not in DONE:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(timeout=remaining)
        return self.get(name)

    def shutdown(self) -> None:
        """Cancel every operation; queued ones will never run, so they end now."""
        with self._cond:
            ops = list(self._ops.values())
        for op in ops:
            op.progress.cancel()
            self._transition(op, State.OPERATION_STATE_CANCELLED, expect=frozenset({State.OPERATION_STATE_QUEUED}),
                             error=error_info(Cancelled("the server shut down before it started")))
        self._pool.shutdown(wait=False, cancel_futures=True)


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):  # type: ignore[misc]
    """GetOperation, WatchOperation and CancelOperation over one OperationManager."""

    def __init__(self, manager: OperationManager) -> None:
        self.manager = manager

    def GetOperation(self, request: operations_pb2.GetOperationRequest, context: grpc.ServicerContext) -> operations_pb2.GetOperationResponse:
        return operations_pb2.GetOperationResponse(operation=self.manager.get(request.name))

    def WatchOperation(self, request: operations_pb2.WatchOperationRequest, context: grpc.ServicerContext) -> Iterator[operations_pb2.WatchOperationResponse]:
        for op in self.manager.watch(request.name, context.is_active):
            yield operations_pb2.WatchOperationResponse(operation=op)

    def CancelOperation(self, request: operations_pb2.CancelOperationRequest, context: grpc.ServicerContext) -> operations_pb2.CancelOperationResponse:
        return operations_pb2.CancelOperationResponse(operation=self.manager.cancel(request.name))
