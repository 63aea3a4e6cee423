"""Runs a stage on its stage service: start the operation, follow it, map its end to a domain error.

The operation's name is kept in the stage's handle, so a restarted controller follows the
operation already running in the service instead of starting the work again.

Replicas: a service address (``host:port`` or ``dns:///host:port``) whose name resolves to several
addresses, as a headless Service's does, or a comma-separated list of addresses, is a set of replicas.
Each stage attempt goes to the next replica round-robin and stays there: a replica keeps its
operations in memory, so Get/Watch/Cancel must reach the one that started it (gRPC's per-call
round_robin policy would scatter them).
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any

import grpc

from synthtune.controller.runner import StageTask
from synthtune.errors import Cancelled, InvalidInput, RetryableError, SynthtuneError
from synthtune.progress import Progress
from synthtune.rpc.client import channel, domain_error, error_for
from synthtune.rpc.gen.synthtune.v1 import operations_pb2, operations_pb2_grpc
from synthtune.rpc.operations import artifact_message
from synthtune.rpc.stages import request_field, request_message, rpc_name, stub
from synthtune.spec.graph import kind_of, method_of, stage
from synthtune.store import ArtifactRef, Store

State = operations_pb2.OperationState
DONE = (State.OPERATION_STATE_SUCCEEDED, State.OPERATION_STATE_FAILED, State.OPERATION_STATE_CANCELLED)


def start_request(task: StageTask, store_uri: str) -> tuple[str, Any]:
    """(method name, request message) that starts ``task`` on its stage service, with the inputs the graph declares."""
    st = stage(task.stage)
    fields: dict[str, Any] = {"spec_yaml": task.spec_yaml, "store_uri": store_uri, "run_id": task.run_id, "base_dir": task.base_dir or ""}
    if st.per_method:
        fields["method"] = task.method
    for inp in st.inputs:
        if inp.each_method:
            fields[request_field(inp)] = {method_of(k): artifact_message(v) for k, v in task.inputs.items()
                                          if kind_of(k) == inp.name and v is not None}
        else:
            fields[request_field(inp)] = artifact_message(task.inputs.get(inp.name))
    return rpc_name(st.kind), request_message(st.kind, **fields)


def operation_error(op: operations_pb2.Operation, peer: str) -> SynthtuneError:
    """The domain error an operation ended with, as the stage itself raised it."""
    err = op.error
    message = err.message or f"{op.stage} ended {State.Name(op.state)} without a message"
    if op.state == State.OPERATION_STATE_CANCELLED:
        return Cancelled(message)
    if err.retryable:
        return RetryableError(message, delay=err.retry_delay_seconds)
    if err.code == "INTERNAL":
        return SynthtuneError(f"{op.stage} failed on {peer}: {message}")
    return error_for(err.code, message, peer, err.retry_delay_seconds)


def resolve_replicas(target: str) -> list[str]:
    """The replica addresses behind a service address: a comma-separated list as given, else every address its
    host name resolves to (a headless Service: one per ready pod), sorted; the target itself when it resolves to one."""
    if "," in target:
        return [t.strip() for t in target.split(",") if t.strip()]
    host, _, port = target.removeprefix("dns:///").rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError):
        return [target]  # unresolvable for now: gRPC waits for it (wait_for_ready) and names it if it stays away
    addresses = sorted({f"[{i[4][0]}]:{port}" if i[0] == socket.AF_INET6 else f"{i[4][0]}:{port}" for i in infos})
    return addresses if len(addresses) > 1 else [target]


class GrpcRunner:
    """One stage attempt on the stage service named in ``services`` for its kind, on the next of its replicas."""

    def __init__(self, services: dict[str, str], token: str | None = None, tls_ca: str | None = None,
                 watch_window_s: float = 5.0, unavailable_retries: int = 5, start_timeout_s: float = 60.0,
                 resolve: Callable[[str], list[str]] = resolve_replicas) -> None:
        self.services = services
        self.token, self.tls_ca = token, tls_ca
        self.watch_window_s = watch_window_s
        self.unavailable_retries = unavailable_retries
        self.start_timeout_s = start_timeout_s  # waits this long for a service that is (re)starting
        self._resolve = resolve
        self._turns: dict[str, itertools.count[int]] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def _replica(self, target: str, task: StageTask) -> str:
        """The replica an earlier attempt of ``task`` used (to follow its operation) while it is still there, else the next one."""
        replicas = self._resolve(target)
        if task.handle.get("target") == target and task.handle.get("replica") in replicas:
            return str(task.handle["replica"])
        with self._lock:
            turn = next(self._turns.setdefault(target, itertools.count()))
        return replicas[turn % len(replicas)]

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            ch.close()

    def _channel(self, target: str, replica: str) -> grpc.Channel:
        with self._lock:
            if replica not in self._channels:
                # A replica's address is an IP: TLS still checks the certificate against the service's name.
                host = target.removeprefix("dns:///").rpartition(":")[0].strip("[]")
                options = [("grpc.ssl_target_name_override", host), ("grpc.default_authority", host)] \
                    if replica != target and "," not in target else None
                self._channels[replica] = channel(replica, self.token, self.tls_ca, options=options)
            return self._channels[replica]

    def run(self, task: StageTask, store: Store, progress: Progress) -> ArtifactRef:
        target = self.services.get(task.kind)
        if not target:
            raise InvalidInput(f"controller config: no stage service address for {task.kind!r} (services.{task.kind})")
        replica = self._replica(target, task)
        peer = f"{stage(task.stage).service} service at {target}" + (f" (replica {replica})" if replica != target else "")
        ch = self._channel(target, replica)
        ops = operations_pb2_grpc.OperationsServiceStub(ch)
        op = self._reattach(task, ops, target, peer)
        if op is None:
            method, request = start_request(task, store.uri)
            try:
                op = getattr(stub(task.kind, ch), method)(request, timeout=self.start_timeout_s, wait_for_ready=True).operation
            except grpc.RpcError as exc:
                raise domain_error(exc, peer) from None
            task.remember(operation=op.name, target=target, replica=replica)
        op = self._follow(op, ops, progress, peer)
        if op.state == State.OPERATION_STATE_SUCCEEDED:
            return ArtifactRef(op.result.kind, op.result.id, op.result.uri)
        raise operation_error(op, peer)

    def _reattach(self, task: StageTask, ops: Any, target: str, peer: str) -> operations_pb2.Operation | None:
        """The operation an earlier attempt started, if it is still running or succeeded there."""
        name = task.handle.get("operation")
        if not name or task.handle.get("target") != target:
            return None
        try:
            op = ops.GetOperation(operations_pb2.GetOperationRequest(name=name), timeout=30).operation
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None  # the service restarted (its operations live in memory): start again
            raise domain_error(exc, peer) from None  # away for now: retry later, and keep following it
        if op.state in (State.OPERATION_STATE_FAILED, State.OPERATION_STATE_CANCELLED):
            return None
        return op  # type: ignore[no-any-return]

    def _follow(self, op: operations_pb2.Operation, ops: Any, progress: Progress, peer: str) -> operations_pb2.Operation:
        """Watch until the operation ends, relaying progress; cancel it when ``progress`` is cancelled."""
        seen_message = ""
        failures = 0
        while op.state not in DONE:
            if progress.cancelled:
                try:
                    ops.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), timeout=30)
                except grpc.RpcError:
                    pass  # the service is away; its operation ends with it
                raise Cancelled(f"{op.stage} cancelled")
            # Watched in windows, so a cancel is noticed between them and a dropped stream is resumed.
            try:
                for resp in ops.WatchOperation(operations_pb2.WatchOperationRequest(name=op.name), timeout=self.watch_window_s):
                    op = resp.operation
                    p = op.progress
                    progress.update(p.completed, p.total or None, p.description)
                    if p.message and p.message != seen_message:
                        seen_message = p.message
                        progress.note(p.message)
                    if progress.cancelled or op.state in DONE:
                        break
                failures = 0
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    raise RetryableError(f"{peer} lost operation {op.name} (the service restarted)") from None
                failures += 1
                if failures > self.unavailable_retries:
                    raise domain_error(exc, peer) from None
                progress.wait_cancelled(min(2.0 ** failures, 30.0))
        return op
