"""The one bootstrap every synthtune gRPC server uses: health, reflection, auth, errors, metrics, TLS."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from synthtune.errors import InvalidInput
from synthtune.rpc.interceptors import Metrics, ServerInterceptor
from synthtune.rpc.tls import server_credentials, warn_token_in_clear

log = logging.getLogger("synthtune.rpc")
TOKEN_ENV = "SYNTHTUNE_AUTH_TOKEN"
RESERVED_WORKERS = 4


@dataclass
class ServiceBinding:
    """A servicer, the generated function that adds it to a server, and its full service name."""

    servicer: Any
    add_to_server: Callable[[Any, grpc.Server], None]
    name: str


@dataclass
class ServerOptions:
    """How to listen: address, auth (token or explicit insecure), TLS, metrics port, worker threads."""

    port: int = 50051
    host: str = "0.0.0.0"
    token: str | None = None
    insecure: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None  # set: mutual TLS, clients must present a certificate this CA signed
    health_port: int | None = None  # with TLS: grpc.health.v1 alone, in plaintext, for Kubernetes' gRPC probes (they cannot do TLS)
    metrics_port: int | None = None
    max_workers: int = 32
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunningServer:
    """A started server: its bound port, health servicer and metrics port (None when off)."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    metrics_port: int | None
    metrics_http: Any = None
    health_server: grpc.Server | None = None

    def stop(self, grace: float | None = 2.0) -> None:
        """Report NOT_SERVING, let calls in flight finish for ``grace`` s, then close the metrics port."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()


def resolve_token(options: ServerOptions) -> str | None:
    """The bearer token to require, or None with --insecure; refuses to run open by accident."""
    token = options.token if options.token is not None else os.environ.get(TOKEN_ENV)
    if token:
        return token
    if options.insecure:
        log.warning("serving WITHOUT authentication (--insecure); use only for local development")
        return None
    raise InvalidInput(f"refusing to start without a token: set {TOKEN_ENV}, or pass --insecure for local development")


def max_streams(max_workers: int) -> int:
    """Streams held open at once: all but RESERVED_WORKERS threads, kept for unary calls and probes."""
    return max(1, max_workers - RESERVED_WORKERS)


def build_server(bindings: Sequence[ServiceBinding], options: ServerOptions | None = None, **fields: Any) -> RunningServer:
    """Create, configure and start a server; returns once it is listening.

    Options come as a ServerOptions, as keywords (``port=0, host="127.0.0.1", token=...``), or
    both (keywords win).
    """
    options = replace(options or ServerOptions(), **fields)
    token = resolve_token(options)
    credentials = server_credentials(options.tls_cert, options.tls_key, options.tls_client_ca)
    if token and credentials is None:
        warn_token_in_clear(f"{options.host}:{options.port}", "accepted on")
    registry = CollectorRegistry()
    metrics_http, metrics_port = None, None
    if options.metrics_port is not None:
        try:
            metrics_http, _thread = start_http_server(options.metrics_port, addr=options.host, registry=registry)
        except OSError as exc:
            raise InvalidInput(f"cannot serve metrics on {options.host}:{options.metrics_port}: {exc}") from None
        metrics_port = int(metrics_http.server_port)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="synthtune-rpc"),
        interceptors=[ServerInterceptor(token, Metrics(registry), max_streams=max_streams(options.max_workers))],
        # Calls waiting for a thread are bounded too; past this gRPC answers RESOURCE_EXHAUSTED.
        maximum_concurrent_rpcs=options.max_workers * 4,
        # No SO_REUSEPORT (gRPC's default): a second server on a taken port would share it and get half the calls.
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024), ("grpc.so_reuseport", 0)],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for binding in bindings:
        binding.add_to_server(binding.servicer, server)
        names.append(binding.name)
        health_servicer.set(binding.name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{options.host}:{options.port}"
    cause: Exception | None = None
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:
        port, cause = 0, exc
    if port == 0:
        if metrics_http is not None:
            metrics_http.shutdown()
            metrics_http.server_close()
        raise InvalidInput(f"cannot listen on {address}: {cause or 'port in use or not allowed'}")
    server.start()
    health_server = _health_only(health_servicer, options.host, options.health_port) if options.health_port is not None else None
    log.info("serving", extra={"address": f"{options.host}:{port}", "services": names, "auth": token is not None,
                               "tls": bool(options.tls_cert), "mutual_tls": bool(options.tls_client_ca), "metrics_port": metrics_port})
    return RunningServer(server, port, health_servicer, metrics_port, metrics_http, health_server)


def _health_only(servicer: health.HealthServicer, host: str, port: int) -> grpc.Server:
    """A plaintext server with only the health service (no data, no token) beside a TLS server."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="synthtune-health"),
                         options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise InvalidInput(f"cannot listen on {host}:{port} for health checks")
    server.start()
    return server
