"""Client channels that send the bearer token and a request id on every call."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from synthtune.rpc.server import TOKEN_ENV


class _AuthInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str | None) -> None:
        self.token = token

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or [])
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if not any(k == "x-request-id" for k, _ in metadata):
            metadata.append(("x-request-id", uuid.uuid4().hex[:16]))
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def channel(target: str, token: str | None = None, tls_ca: str | None = None) -> grpc.Channel:
    """A channel to ``host:port`` with the token (default: SYNTHTUNE_AUTH_TOKEN) on every call."""
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if tls_ca:
        with open(tls_ca, "rb") as f:
            base = grpc.secure_channel(target, grpc.ssl_channel_credentials(f.read()))
    else:
        base = grpc.insecure_channel(target)
    return grpc.intercept_channel(base, _AuthInterceptor(token))
