"""Server interceptors: bearer-token auth, domain-error mapping, request ids, logs and metrics."""

from __future__ import annotations

import contextvars
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from synthtune.rpc.errors import status_for

log = logging.getLogger("synthtune.rpc")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Health checks and reflection stay open so probes and grpcurl work without the token.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k.lower(): v for k, v in (context.invocation_metadata() or []) if isinstance(v, str)}


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("synthtune_grpc_requests_total", "gRPC requests by method and status code", ["method", "code"], registry=registry)
        self.latency = Histogram("synthtune_grpc_request_seconds", "gRPC request latency by method", ["method"], registry=registry)


class ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Auth first, then the handler with error mapping, logging and metrics around it."""

    def __init__(self, token: str | None, metrics: Metrics | None) -> None:
        self.token = token
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # streaming requests: reflection only, which is open

    def _check_auth(self, method: str, context: grpc.ServicerContext) -> None:
        if self.token is None or method.startswith(OPEN_PREFIXES):
            return
        header = _metadata(context).get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.encode(), self.token.encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (set SYNTHTUNE_AUTH_TOKEN)")

    def _begin(self, method: str, context: grpc.ServicerContext) -> tuple[contextvars.Token[str], float]:
        rid = _metadata(context).get("x-request-id") or uuid.uuid4().hex[:16]
        context.set_trailing_metadata((("x-request-id", rid),))
        return request_id_var.set(rid), time.perf_counter()

    def _finish(self, method: str, code: str, started: float, token: contextvars.Token[str]) -> None:
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.requests.labels(method, code).inc()
            self.metrics.latency.labels(method).observe(elapsed)
        log.info("rpc", extra={"method": method, "code": code, "seconds": round(elapsed, 4), "request_id": request_id_var.get()})
        request_id_var.reset(token)

    def _wrap_unary(self, method: str, fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            token, started = self._begin(method, context)
            outcome = {"code": "OK"}
            try:
                self._check_auth(method, context)
                return fn(request, context)
            except Exception as exc:
                _abort_for(exc, context, outcome)
            finally:
                self._finish(method, outcome["code"], started, token)

        return wrapper

    def _wrap_stream(self, method: str, fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            token, started = self._begin(method, context)
            outcome = {"code": "OK"}
            try:
                self._check_auth(method, context)
                yield from fn(request, context)
            except Exception as exc:
                _abort_for(exc, context, outcome)
            finally:
                self._finish(method, outcome["code"], started, token)

        return wrapper


def _abort_for(exc: Exception, context: grpc.ServicerContext, outcome: dict[str, str]) -> None:
    """Record the status for a handler's exception and abort the call with it (always raises)."""
    if type(exc) is Exception:  # context.abort() already set the status and raised a bare Exception
        outcome["code"] = "ABORTED"
        raise exc
    status, message, _ = status_for(exc)
    outcome["code"] = status.name
    context.abort(status, message)
