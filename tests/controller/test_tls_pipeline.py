"""CLI -> controller -> stage service, every hop over mutual TLS, as real `synthtune serve` processes on loopback.

The prepare stage runs only on the dataprep service (runner grpc), which accepts nothing but mutual TLS: a
finished prepare proves the controller reached it with its client certificate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tls_certs import make_certs

from .test_serve_process import EXAMPLE, REPO, _port

pytestmark = pytest.mark.integration
TOKEN = "mtls-t0ken"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHTUNE_TLS_")}
    return dict(env, PYTHONPATH=str(REPO / "services"), SYNTHTUNE_CACHE=str(tmp_path / "cache"), SYNTHTUNE_AUTH_TOKEN=TOKEN, **extra)


def _serve(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "synthtune.cli.main", "serve", *args, "--host", "127.0.0.1"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving" in line, proc.stderr.read() if proc.stderr else line
    return proc


def test_cli_to_controller_to_stage_service_over_mutual_tls(tmp_path):
    certs = make_certs(tmp_path / "certs")
    server_tls = ["--tls-cert", certs.server_cert, "--tls-key", certs.server_key, "--tls-client-ca", certs.ca]
    stage_port, controller_port = _port(), _port()
    config = tmp_path / "controller.yaml"
    config.write_text(f"runners: {{prepare: grpc}}\nservices: {{prepare: 'localhost:{stage_port}'}}\nservices_tls_ca: {certs.ca}\n")
    procs = []
    try:
        procs.append(_serve(tmp_path, _env(tmp_path), "dataprep", "--port", str(stage_port), *server_tls))
        # The controller's own client certificate for the stage services comes from the environment.
        controller_env = _env(tmp_path, SYNTHTUNE_TLS_CERT=certs.client_cert, SYNTHTUNE_TLS_KEY=certs.client_key)
        procs.append(_serve(tmp_path, controller_env, "controller", "--port", str(controller_port), "--store", str(tmp_path / "store"),
                            "--config", str(config), *server_tls))
        address = f"localhost:{controller_port}"
        client = ["--controller", address, "--tls-ca", certs.ca, "--tls-cert", certs.client_cert, "--tls-key", certs.client_key]

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "synthtune.cli.main", *args], capture_output=True, text=True,
                                  env=_env(tmp_path), timeout=180)

        out = cli("submit", str(EXAMPLE), "--until", "prepare", *client)
        assert out.returncode == 0, out.stderr
        run_id = out.stdout.strip().splitlines()[-1].split()[0].removeprefix("run_id=")
        watch = cli("runs", "watch", run_id, *client)
        assert watch.returncode == 0, watch.stderr + watch.stdout
        show = cli("runs", "show", run_id, *client)
        assert show.returncode == 0 and "succeeded" in show.stdout and "/artifacts/prepared-" in show.stdout, show.stdout
        plain = cli("runs", "list", "--controller", address)  # no TLS at all: refused, and said so
        # exit 1 (a retryable fault), one line naming the controller, no traceback
        assert plain.returncode == 1 and plain.stderr.startswith(f"error: controller at {address} unreachable"), plain.stderr
        assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
