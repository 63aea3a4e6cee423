"""Server interceptor: bearer-token auth, domain-error mapping, request and run ids, logs, metrics."""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from synthtune.rpc.errors import status_for
from synthtune.rpc.logs import request_id_var, run_id_var

log = logging.getLogger("synthtune.rpc")

# Only the probes' unary Check answers without the token: an open stream (Health/Watch, reflection)
# would let anyone hold the server's worker threads.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})
QUIET_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # logged at DEBUG: probes and tools
Behaviour = Callable[[Any, grpc.ServicerContext], Any]


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k.lower(): v for k, v in (context.invocation_metadata() or []) if isinstance(v, str)}


class Metrics:
    """Request count and latency per method and status code, in the server's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("synthtune_grpc_requests_total", "gRPC requests by method and status code", ["method", "code"], registry=registry)
        self.latency = Histogram("synthtune_grpc_request_seconds", "gRPC request latency by method and status code", ["method", "code"], registry=registry)


@dataclass
class _Call:
    method: str
    started: float
    code: str = ""  # set when this interceptor mapped an exception


def _final_code(call: _Call, context: grpc.ServicerContext) -> str:
    """The status the client saw: how a call it left ended, else ours, else the handler's own abort."""
    if not context.is_active():  # the client went away: its deadline passed or it cancelled
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    if call.code:
        return call.code
    code = context.code()
    return str(code.name) if code is not None else "OK"


class ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Auth first, then the handler with error mapping, logging and metrics around it."""

    def __init__(self, token: str | None, metrics: Metrics | None, max_streams: int | None = None) -> None:
        self.token = token
        self.metrics = metrics
        # Each open stream holds a worker thread; past this many, new streams get RESOURCE_EXHAUSTED
        # so unary calls and probes always find a thread.
        self.max_streams = max_streams
        self._streams = 0
        self._streams_lock = threading.Lock()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = str(details.method)
        # Every handler kind is wrapped, so no client-streaming method can slip past auth.
        kinds: list[tuple[str, Callable[..., Any], bool]] = [
            ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
            ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
            ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
            ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
        ]
        for attr, make, streaming in kinds:
            behaviour = getattr(handler, attr)
            if behaviour is not None:
                counted = attr != "unary_unary"
                wrapped = self._wrap_stream(method, behaviour) if streaming else self._wrap_unary(method, behaviour, counted)
                return make(wrapped, request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler

    def _check_auth(self, method: str, context: grpc.ServicerContext) -> None:
        if self.token is None or method in OPEN_METHODS:
            return
        header = _metadata(context).get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        # compare_digest keeps the comparison's time independent of where the strings differ.
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.encode(), self.token.encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (set SYNTHTUNE_AUTH_TOKEN)")

    def _enter_stream(self, context: grpc.ServicerContext) -> bool:
        """Count one more open stream, or abort with RESOURCE_EXHAUSTED past the bound; True when counted."""
        if self.max_streams is None:
            return False
        with self._streams_lock:
            full = self._streams >= self.max_streams
            if not full:
                self._streams += 1
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the server holds {self.max_streams} open streams already; retry later")
        return True

    def _leave_stream(self, counted: bool) -> None:
        if counted:
            with self._streams_lock:
                self._streams -= 1

    def _begin(self, method: str, request: Any, context: grpc.ServicerContext) -> _Call:
        rid = _metadata(context).get("x-request-id") or uuid.uuid4().hex[:16]
        context.set_trailing_metadata((("x-request-id", rid),))
        request_id_var.set(rid)
        run_id = getattr(request, "run_id", "")  # stage and run requests carry one; streams of requests do not
        run_id_var.set(run_id if isinstance(run_id, str) else "")
        return _Call(method, time.perf_counter())

    def _fail(self, call: _Call, exc: Exception, context: grpc.ServicerContext) -> None:
        """Abort the call with the status for a handler's exception (always raises)."""
        if type(exc) is Exception and context.code() is not None:
            raise exc  # context.abort() already set the status and raised a bare Exception
        status, message, _ = status_for(exc)
        call.code = status.name
        context.abort(status, message)

    def _finish(self, call: _Call, context: grpc.ServicerContext) -> None:
        elapsed = time.perf_counter() - call.started
        code = _final_code(call, context)
        if self.metrics is not None:
            self.metrics.requests.labels(call.method, code).inc()
            self.metrics.latency.labels(call.method, code).observe(elapsed)
        # Probes call health every few seconds; their lines would drown the real calls.
        level = logging.DEBUG if call.method.startswith(QUIET_PREFIXES) else logging.INFO
        log.log(level, "rpc", extra={"method": call.method, "code": code, "seconds": round(elapsed, 4)})
        # set, not reset: a stream's generator may be closed from another context than it ran in.
        request_id_var.set("")
        run_id_var.set("")

    @contextmanager
    def _guarded(self, method: str, request: Any, context: grpc.ServicerContext, stream: bool) -> Iterator[None]:
        """Around one handler call: auth, the stream bound, one status per error, metrics and the log line."""
        call = self._begin(method, request, context)
        held = False
        try:
            self._check_auth(method, context)
            held = stream and self._enter_stream(context)
            yield
        except Exception as exc:  # noqa: BLE001 - every error is mapped to a status here, once
            self._fail(call, exc, context)
        finally:
            self._leave_stream(held)
            self._finish(call, context)

    def _wrap_unary(self, method: str, fn: Behaviour, counted: bool = False) -> Behaviour:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            with self._guarded(method, request, context, counted):
                return fn(request, context)

        return wrapper

    def _wrap_stream(self, method: str, fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Behaviour:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._guarded(method, request, context, True):
                yield from fn(request, context)

        return wrapper
