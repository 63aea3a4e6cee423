"""TLS and mutual TLS between the CLI and a controller on loopback, with generated certificates; each TLS
mistake is a clear error naming the server (exit 2), and a token without TLS is warned about."""

from __future__ import annotations

import logging
import socket

import pytest

from synthtune.cli.main import main
from synthtune.controller.server import start
from synthtune.rpc.server import ServerOptions
from synthtune.rpc.tls import is_loopback
from tls_certs import make_certs

TOKEN = "tls-t0ken"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):  # type: ignore[no-untyped-def]
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def controller(tmp_path, certs, monkeypatch):  # type: ignore[no-untyped-def]
    """A controller serving TLS; ``mutual`` in the factory requires client certificates signed by the test CA."""
    monkeypatch.setenv("SYNTHTUNE_AUTH_TOKEN", TOKEN)
    for name in ("SYNTHTUNE_TLS_CA", "SYNTHTUNE_TLS_CERT", "SYNTHTUNE_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    started = []

    def make(cert: str = certs.server_cert, key: str = certs.server_key, mutual: bool = False) -> str:
        options = ServerOptions(port=0, host="127.0.0.1", token=TOKEN, tls_cert=cert, tls_key=key,
                                tls_client_ca=certs.ca if mutual else None)
        c = start(["controller"], options, str(tmp_path / "store"))
        started.append(c)
        return f"localhost:{c.port}"

    yield make
    for c in started:
        c.stop(0)


def _cli(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_talks_tls_with_the_ca_from_the_flag_or_the_environment(controller, certs, capsys, monkeypatch):
    address = controller()
    assert _cli(capsys, "runs", "list", "--controller", address, "--tls-ca", certs.ca)[0] == 0
    monkeypatch.setenv("SYNTHTUNE_TLS_CA", certs.ca)
    assert _cli(capsys, "runs", "list", "--controller", address)[0] == 0


def test_mutual_tls_needs_a_client_certificate_the_server_trusts(controller, certs, capsys, monkeypatch):
    address = controller(mutual=True)
    code, _, err = _cli(capsys, "runs", "list", "--controller", address, "--tls-ca", certs.ca)
    assert code == 2 and f"TLS with controller at {address} failed" in err and "client certificate" in err, err
    assert "Traceback" not in err
    code, _, err = _cli(capsys, "runs", "list", "--controller", address, "--tls-ca", certs.ca,
                        "--tls-cert", certs.client_cert, "--tls-key", certs.client_key)
    assert code == 0, err
    monkeypatch.setenv("SYNTHTUNE_TLS_CERT", certs.client_cert)
    monkeypatch.setenv("SYNTHTUNE_TLS_KEY", certs.client_key)
    assert _cli(capsys, "runs", "show", "no-such-run", "--controller", address, "--tls-ca", certs.ca)[0] == 2  # NOT_FOUND, over mTLS


@pytest.mark.parametrize("case", ["wrong_ca", "expired", "plaintext_server"])
def test_tls_mistakes_are_clear_errors_naming_the_server(controller, certs, capsys, case, tmp_path):
    if case == "plaintext_server":
        c = start(["controller"], ServerOptions(port=0, host="127.0.0.1", token=TOKEN), str(tmp_path / "plain-store"))
        address = f"localhost:{c.port}"
    else:
        address = controller(*((certs.expired_cert, certs.expired_key) if case == "expired" else ()))
    ca = certs.other_ca if case == "wrong_ca" else certs.ca
    try:
        code, _, err = _cli(capsys, "runs", "list", "--controller", address, "--tls-ca", ca)
    finally:
        if case == "plaintext_server":
            c.stop(0)
    assert code == 2, err
    assert f"TLS with controller at {address} failed" in err and "Traceback" not in err
    expected = {"wrong_ca": "not signed by the CA", "expired": "expired", "plaintext_server": "does not speak TLS"}[case]
    assert expected in err


def test_bad_tls_files_and_half_pairs_are_refused(certs, capsys, tmp_path):
    code, _, err = _cli(capsys, "runs", "list", "--controller", "localhost:1", "--tls-ca", str(tmp_path / "missing.pem"))
    assert code == 2 and "cannot read the TLS CA" in err and "missing.pem" in err
    code, _, err = _cli(capsys, "runs", "list", "--controller", "localhost:1", "--tls-ca", certs.ca, "--tls-cert", certs.client_cert)
    assert code == 2 and "needs both the client certificate and its key" in err
    with pytest.raises(Exception, match="mutual TLS.*needs the server's own --tls-cert"):
        start(["controller"], ServerOptions(port=0, host="127.0.0.1", token=TOKEN, tls_client_ca=certs.ca), str(tmp_path / "s"))


def test_a_token_without_tls_is_warned_about_off_loopback(caplog):
    from synthtune.rpc.client import channel

    with caplog.at_level(logging.WARNING, logger="synthtune.rpc"):
        channel("127.0.0.1:1", token="t").close()
        channel("localhost:1", token="t").close()
        assert not caplog.records
        channel("controller.synthtune.svc:50051", token="t").close()
    assert "WITHOUT TLS" in caplog.text and "controller.synthtune.svc:50051" in caplog.text
    assert is_loopback("[::1]:5") and is_loopback("dns:///localhost:5") and not is_loopback("10.0.0.1:5")


def test_a_tls_server_answers_health_checks_in_plaintext_on_its_health_port(certs, tmp_path):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        health_port = s.getsockname()[1]
    c = start(["controller"], ServerOptions(port=0, host="127.0.0.1", token=TOKEN, tls_cert=certs.server_cert, tls_key=certs.server_key,
                                            health_port=health_port), str(tmp_path / "store"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="synthtune.v1.PipelineService"), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as err:  # nothing but health there
                ch.unary_unary("/synthtune.v1.PipelineService/ListRuns")(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        c.stop(0)
