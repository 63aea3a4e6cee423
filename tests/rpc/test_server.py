"""The shared bootstrap on real loopback servers: health, reflection, auth, errors, deadlines, metrics, TLS, logs."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from synthtune.errors import Cancelled, InvalidInput, NotFound, PermanentError, RetryableError
from synthtune.rpc.client import channel
from synthtune.rpc.server import (
    RunningServer,
    ServerOptions,
    ServiceBinding,
    build_server,
)

pytestmark = pytest.mark.integration
TOKEN = "bootstrap-token"
SERVICE = "synthtune.test.Probe"


class Probe:
    """Handlers of a generic test service: raise what the request names, wait on a deadline, read a stream."""

    def __init__(self) -> None:
        self.saw_cancel = threading.Event()

    def fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        errors: dict[bytes, Exception] = {
            b"invalid": InvalidInput("spec.yaml: 2 problem(s)", ["spec.yaml:3:5: train.max_steps: must be >= 1", "spec.yaml:7:1: source: required"]),
            b"notfound": NotFound("run r-123 does not exist"),
            b"retry": RetryableError("teacher endpoint returned 503", delay=2.0),
            b"cancelled": Cancelled("prepare cancelled"),
            b"permanent": PermanentError("adapter does not fit on /secret/gpu0"),
            b"bug": RuntimeError("KeyError in /srv/secret/path.py with password=hunter2"),
        }
        if request in errors:
            raise errors[request]
        return b"ok:" + request

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up and context.is_active():  # what a stage servicer checks before starting work
            time.sleep(0.01)
        if not context.is_active():
            self.saw_cancel.set()
        return b"done"

    def upload(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return b"".join(requests)


def _binding(probe: Probe) -> ServiceBinding:
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Fail": grpc.unary_unary_rpc_method_handler(probe.fail),
        "Slow": grpc.unary_unary_rpc_method_handler(probe.slow),
        "Upload": grpc.stream_unary_rpc_method_handler(probe.upload),
    })
    return ServiceBinding(probe, lambda _servicer, server: server.add_generic_rpc_handlers((handler,)), SERVICE)


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


@pytest.fixture(scope="module")
def running(probe: Probe) -> Iterator[RunningServer]:
    server = build_server([_binding(probe)], ServerOptions(port=0, host="127.0.0.1", token=TOKEN, metrics_port=0))
    yield server
    server.stop(0)


def _call(running: RunningServer, method: str, body: bytes, token: str | None = TOKEN, timeout: float = 5, **kw: Any) -> Any:
    ch = channel(f"127.0.0.1:{running.port}", token=token)
    return ch.unary_unary(f"/{SERVICE}/{method}").with_call(body, timeout=timeout, **kw)


def _metrics(running: RunningServer) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5).read().decode()


def test_health_is_serving_per_service_without_a_token(running):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    for service in ["", SERVICE]:
        assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as exc:
        stub.Check(health_pb2.HealthCheckRequest(service="synthtune.v1.NoSuchService"), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_needs_the_token(running):
    request = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ServerReflectionInfo(request, timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stub = reflection_pb2_grpc.ServerReflectionStub(channel(f"127.0.0.1:{running.port}", token=TOKEN))
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_idle_watch_streams_cannot_starve_calls_or_probes(probe):
    """40 unauthenticated Health/Watch streams, then authenticated ones past the bound: calls and probes still answer."""
    small = build_server([_binding(probe)], ServerOptions(port=0, host="127.0.0.1", token=TOKEN, max_workers=8))
    address = f"127.0.0.1:{small.port}"
    streams = []
    try:
        anonymous = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
        streams = [anonymous.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20) for _ in range(40)]
        codes = set()
        for stream in streams:
            with pytest.raises(grpc.RpcError) as err:
                next(stream)
            codes.add(err.value.code())
        assert codes == {grpc.StatusCode.UNAUTHENTICATED}
        authed = health_pb2_grpc.HealthStub(channel(address, token=TOKEN))
        held = [authed.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20) for _ in range(4)]  # 8 workers - 4 kept
        streams += held
        assert all(next(s).status == health_pb2.HealthCheckResponse.SERVING for s in held)
        extra = authed.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        streams.append(extra)
        with pytest.raises(grpc.RpcError) as err:
            next(extra)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert anonymous.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status == health_pb2.HealthCheckResponse.SERVING
        ch = channel(address, token=TOKEN)
        assert ch.unary_unary(f"/{SERVICE}/Fail").with_call(b"hi", timeout=2)[0] == b"ok:hi"
    finally:
        for stream in streams:
            stream.cancel()
        small.stop(0)


@pytest.mark.parametrize("metadata", [None, [("authorization", "Bearer wrong")], [("authorization", TOKEN)],
                                      [("authorization", f"Basic {TOKEN}")], [("authorization", "Bearer ")]])
def test_missing_or_wrong_token_is_unauthenticated(running, metadata):
    ch = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    with pytest.raises(grpc.RpcError) as exc:
        ch.unary_unary(f"/{SERVICE}/Fail")(b"hello", timeout=5, metadata=metadata)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_right_token_works_and_a_request_id_comes_back(running):
    reply, call = _call(running, "Fail", b"hello")
    assert reply == b"ok:hello"
    generated = dict(call.trailing_metadata())["x-request-id"]
    assert len(generated) == 16
    _, call = _call(running, "Fail", b"hello", metadata=[("x-request-id", "req-42")])
    assert dict(call.trailing_metadata())["x-request-id"] == "req-42"


def test_client_streaming_methods_need_the_token_too(running):
    ch = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    with pytest.raises(grpc.RpcError) as exc:
        ch.stream_unary(f"/{SERVICE}/Upload")(iter([b"a", b"b"]), timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    authed = channel(f"127.0.0.1:{running.port}", token=TOKEN)
    assert authed.stream_unary(f"/{SERVICE}/Upload")(iter([b"a", b"b"]), timeout=5) == b"ab"


@pytest.mark.parametrize(("body", "code", "must_contain"), [
    (b"invalid", grpc.StatusCode.INVALID_ARGUMENT, ["spec.yaml:3:5: train.max_steps: must be >= 1", "spec.yaml:7:1: source: required"]),
    (b"notfound", grpc.StatusCode.NOT_FOUND, ["run r-123 does not exist"]),
    (b"retry", grpc.StatusCode.UNAVAILABLE, ["teacher endpoint returned 503"]),
    (b"cancelled", grpc.StatusCode.CANCELLED, ["prepare cancelled"]),
])
def test_domain_errors_map_to_status_codes(running, body, code, must_contain):
    with pytest.raises(grpc.RpcError) as exc:
        _call(running, "Fail", body)
    assert exc.value.code() == code
    for text in must_contain:
        assert text in exc.value.details()


@pytest.mark.parametrize("body", [b"bug", b"permanent"])
def test_anything_else_is_internal_with_an_error_id_and_no_details(running, body, caplog):
    with caplog.at_level(logging.ERROR, logger="synthtune.rpc"), pytest.raises(grpc.RpcError) as exc:
        _call(running, "Fail", body)
    assert exc.value.code() == grpc.StatusCode.INTERNAL
    details = exc.value.details()
    assert "secret" not in details and "hunter2" not in details and "Error" not in details
    error_id = details.split("error id ")[1].split(";")[0]
    logged = [r for r in caplog.records if getattr(r, "error_id", "") == error_id]
    assert logged and "secret" in logged[0].getMessage()  # the details are in the server log only


def test_deadline_exceeded_ends_the_call_for_the_handler_and_is_counted(running, probe):
    probe.saw_cancel.clear()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as exc:
        _call(running, "Slow", b"", timeout=0.3)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert probe.saw_cancel.wait(3), "the handler still saw an active call after the deadline"
    assert time.monotonic() - started < 3
    assert f'code="DEADLINE_EXCEEDED",method="/{SERVICE}/Slow"' in _metrics(running)


def test_metrics_count_requests_by_method_and_code(running):
    _call(running, "Fail", b"x")
    with pytest.raises(grpc.RpcError):
        _call(running, "Fail", b"notfound")
    with pytest.raises(grpc.RpcError):
        _call(running, "Fail", b"x", token="nope")
    text = _metrics(running)
    for code in ["OK", "NOT_FOUND", "UNAUTHENTICATED"]:
        line = next(x for x in text.splitlines() if x.startswith(f'synthtune_grpc_requests_total{{code="{code}",method="/{SERVICE}/Fail"}}'))
        assert float(line.split()[-1]) >= 1
    assert f'synthtune_grpc_request_seconds_count{{code="OK",method="/{SERVICE}/Fail"}}' in text


def test_logs_are_json_with_request_ids(running, json_logs):
    _call(running, "Fail", b"x", metadata=[("x-request-id", "req-logs")])
    rpc = next(e for e in json_logs() if e["message"] == "rpc" and e.get("request_id") == "req-logs")
    assert rpc["method"] == f"/{SERVICE}/Fail" and rpc["code"] == "OK" and rpc["level"] == "info"


def test_server_refuses_to_start_without_a_token_unless_insecure(monkeypatch):
    monkeypatch.delenv("SYNTHTUNE_AUTH_TOKEN", raising=False)
    with pytest.raises(InvalidInput, match="refusing to start without a token.*SYNTHTUNE_AUTH_TOKEN.*--insecure"):
        build_server([], port=0, host="127.0.0.1")
    open_server = build_server([], port=0, host="127.0.0.1", insecure=True)
    open_server.stop(0)


def test_token_comes_from_the_environment(monkeypatch, probe):
    monkeypatch.setenv("SYNTHTUNE_AUTH_TOKEN", "from-env")
    server = build_server([_binding(probe)], port=0, host="127.0.0.1")
    try:
        assert _call(server, "Fail", b"e", token="from-env")[0] == b"ok:e"
        with pytest.raises(grpc.RpcError) as exc:
            _call(server, "Fail", b"e", token=TOKEN)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(0)


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInput, match=f"cannot listen on 127.0.0.1:{port}"):
            build_server([], port=port, host="127.0.0.1", token=TOKEN)
        with pytest.raises(InvalidInput, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            build_server([], port=0, host="127.0.0.1", token=TOKEN, metrics_port=port)


def test_a_second_server_on_a_port_in_use_is_refused_not_shared(probe):
    """gRPC's default SO_REUSEPORT would let two servers listen on one port and split the connections between them."""
    first = build_server([_binding(probe)], port=0, host="127.0.0.1", token=TOKEN)
    try:
        with pytest.raises(InvalidInput, match=f"cannot listen on 127.0.0.1:{first.port}"):
            build_server([], port=first.port, host="127.0.0.1", token=TOKEN)
        assert _call(first, "Fail", b"e", token=TOKEN)[0] == b"ok:e"
    finally:
        first.stop(0)


def test_stop_closes_the_metrics_port(probe):
    server = build_server([_binding(probe)], port=0, host="127.0.0.1", token=TOKEN, metrics_port=0)
    assert _metrics(server).startswith("# HELP")
    server.stop(0)
    with pytest.raises(OSError):
        _metrics(server)


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_when_a_certificate_and_key_are_given(tmp_path, probe):
    cert, key = _self_signed(tmp_path)
    server = build_server([_binding(probe)], port=0, host="127.0.0.1", token=TOKEN, tls_cert=cert, tls_key=key)
    try:
        secure = channel(f"localhost:{server.port}", token=TOKEN, tls_ca=cert)
        assert secure.unary_unary(f"/{SERVICE}/Fail")(b"tls", timeout=5) == b"ok:tls"
        plain = channel(f"127.0.0.1:{server.port}", token=TOKEN)
        with pytest.raises(grpc.RpcError) as exc:
            plain.unary_unary(f"/{SERVICE}/Fail")(b"tls", timeout=2)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)
    with pytest.raises(InvalidInput, match="both a certificate and a key"):
        build_server([], port=0, host="127.0.0.1", token=TOKEN, tls_cert=cert)
    with pytest.raises(InvalidInput, match="cannot read the TLS key .*missing.key"):
        build_server([], port=0, host="127.0.0.1", token=TOKEN, tls_cert=cert, tls_key=str(tmp_path / "missing.key"))
