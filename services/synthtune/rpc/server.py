"""The one bootstrap every synthtune gRPC server uses: health, reflection, auth, errors, metrics, TLS."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from synthtune.errors import InvalidInput
from synthtune.rpc.interceptors import Metrics, ServerInterceptor

log = logging.getLogger("synthtune.rpc")
TOKEN_ENV = "SYNTHTUNE_AUTH_TOKEN"


@dataclass
class ServiceBinding:
    """A servicer, the generated function that adds it to a server, and its full service name."""

    servicer: Any
    add_to_server: Callable[[Any, grpc.Server], None]
    name: str


@dataclass
class ServerOptions:
    port: int = 50051
    host: str = "0.0.0.0"
    token: str | None = None
    insecure: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    metrics_port: int | None = None
    max_workers: int = 32
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    metrics_port: int | None

    def stop(self, grace: float | None = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def resolve_token(options: ServerOptions) -> str | None:
    """The bearer token to require, or None with --insecure; refuses to run open by accident."""
    token = options.token if options.token is not None else os.environ.get(TOKEN_ENV)
    if token:
        return token
    if options.insecure:
        log.warning("serving WITHOUT authentication (--insecure); use only for local development")
        return None
    raise InvalidInput(f"refusing to start without a token: set {TOKEN_ENV}, or pass --insecure for local development")


def build_server(bindings: Sequence[ServiceBinding], options: ServerOptions) -> RunningServer:
    """Create, configure and start a server; returns once it is listening."""
    token = resolve_token(options)
    registry = CollectorRegistry()
    metrics_port = None
    if options.metrics_port is not None:
        server_, _thread = start_http_server(options.metrics_port, addr=options.host, registry=registry)
        metrics_port = server_.server_port
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="synthtune-rpc"),
        interceptors=[ServerInterceptor(token, Metrics(registry))],
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
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
    if options.tls_cert or options.tls_key:
        if not (options.tls_cert and options.tls_key):
            raise InvalidInput("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        with open(options.tls_key, "rb") as k, open(options.tls_cert, "rb") as c:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise InvalidInput(f"cannot listen on {address} (port in use or not allowed)")
    server.start()
    log.info("serving", extra={"address": f"{options.host}:{port}", "services": names, "auth": token is not None})
    return RunningServer(server, port, health_servicer, metrics_port)
