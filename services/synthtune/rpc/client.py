"""Client channels that send the bearer token and a request id on every call."""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from synthtune.errors import Cancelled, InvalidInput, NotFound, RetryableError, StageSkipped, SynthtuneError
from synthtune.rpc.server import TOKEN_ENV
from synthtune.rpc.tls import ClientTLS, tls_failure


class _Details(
    collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """Call details with our metadata added (grpc's own class cannot be copied with changes)."""


class _AuthInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    def __init__(self, token: str | None) -> None:
        self.token = token

    def _details(self, details: Any) -> _Details:
        metadata = list(details.metadata or [])
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if not any(k == "x-request-id" for k, _ in metadata):
            metadata.append(("x-request-id", uuid.uuid4().hex[:16]))
        return _Details(details.method, details.timeout, metadata, details.credentials,
                        getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def channel(target: str, token: str | None = None, tls_ca: str | None = None, tls_cert: str | None = None,
            tls_key: str | None = None, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A channel to ``host:port`` sending the token (default: $SYNTHTUNE_AUTH_TOKEN) and a request id.

    With a CA (``tls_ca``, else $SYNTHTUNE_TLS_CA: a PEM file of the CA or the server's own certificate)
    the channel uses TLS; with a client certificate and key too ($SYNTHTUNE_TLS_CERT/KEY), mutual TLS.
    """
    from synthtune.rpc.tls import warn_token_in_clear

    token = token if token is not None else os.environ.get(TOKEN_ENV)
    tls = ClientTLS.resolve(tls_ca, tls_cert, tls_key)
    if tls is not None:
        base = grpc.secure_channel(target, tls.credentials(), options=options)
    else:
        if token:
            warn_token_in_clear(target, "sent to")
        base = grpc.insecure_channel(target, options=options)
    return grpc.intercept_channel(base, _AuthInterceptor(token))


def error_for(code: str, message: str, peer: str, retry_delay: float = 0.0, tls: ClientTLS | None = None) -> SynthtuneError:
    """The domain error for a gRPC status code name (of a call, or an operation's ErrorInfo) from ``peer``.

    The inverse of the server's mapping (synthtune.rpc.errors.status_for), so an error keeps its
    meaning, and its exit code, across a call."""
    if code == "INVALID_ARGUMENT":
        return InvalidInput(message)
    if code == "NOT_FOUND":
        return NotFound(message)
    if code == "FAILED_PRECONDITION":
        return StageSkipped(message)
    if code == "UNAVAILABLE" and (problem := tls_failure(message, peer, tls)):
        return InvalidInput(problem)  # a wrong CA or certificate does not heal by retrying
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"):
        return RetryableError(f"{peer} unreachable or busy ({code}): {message}", delay=retry_delay)
    if code == "CANCELLED":
        return Cancelled(message or f"the call to {peer} was cancelled")
    if code == "UNAUTHENTICATED":
        return InvalidInput(f"{peer} refused the call ({message}): set SYNTHTUNE_AUTH_TOKEN to its token")
    return SynthtuneError(f"{peer}: {code}: {message}")


def domain_error(exc: grpc.RpcError, peer: str, tls: ClientTLS | None = None) -> SynthtuneError:
    """The domain error for a failed call to ``peer`` (over ``tls``, when the channel used it)."""
    return error_for(exc.code().name, exc.details() or "", peer, tls=tls)
