"""`synthtune serve controller` as a real process: it resumes what it finds unfinished, and the CLI clients drive it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthtune.controller import RunBook
from synthtune.spec import load_spec
from synthtune.store import open_store

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "quickstart" / "pipeline.yaml"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "services"), SYNTHTUNE_CACHE=str(tmp_path / "cache"), SYNTHTUNE_AUTH_TOKEN="tok")


def _cli(tmp_path: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "synthtune.cli.main", *args], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=timeout)


@pytest.fixture
def controller(tmp_path):
    """Starts `synthtune serve controller` on a free port against a file store; yields (address, store path, start)."""
    store = tmp_path / "store"
    port = _port()
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "synthtune.cli.main", "serve", "controller", "--host", "127.0.0.1",
                                 "--port", str(port), "--store", str(store)], env=_env(tmp_path), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving controller" in line, proc.stderr.read() if proc.stderr else line
        return proc

    yield f"127.0.0.1:{port}", store, start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _wait_status(store: Path, run_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    record: dict = {}
    while time.time() < deadline:
        path = store / "runs" / run_id / "run.json"
        if path.exists():
            record = json.loads(path.read_text())
            if record["status"] in ("succeeded", "failed", "cancelled"):
                return record
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {record.get('status')}")


def test_a_started_controller_continues_the_unfinished_runs_it_finds(controller, tmp_path, monkeypatch):
    address, store_dir, start = controller
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    book = RunBook(open_store(str(store_dir)))
    record = book.create(load_spec(EXAMPLE), EXAMPLE.read_text(), "prepare")
    record.status = "running"  # as a controller that died mid-run left it
    record.stages["prepare"].state, record.stages["prepare"].attempts = "running", 1
    book.save(record)
    proc = start()
    done = _wait_status(store_dir, record.run_id)
    assert done["status"] == "succeeded", done.get("error")
    assert done["stages"]["prepare"]["artifact"]["kind"] == "prepared"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_submit_watch_show_and_list_through_the_cli(controller, tmp_path):
    address, store_dir, start = controller
    start()
    out = _cli(tmp_path, "submit", str(EXAMPLE), "--controller", address, "--until", "prepare")
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    run_id = last.split()[0].removeprefix("run_id=")
    assert last.endswith(f"/runs/{run_id}/run.json")
    watch = _cli(tmp_path, "runs", "watch", run_id, "--controller", address)
    assert watch.returncode == 0, watch.stderr
    assert "stage_finished" in watch.stdout and "run_finished" in watch.stdout
    show = _cli(tmp_path, "runs", "show", run_id, "--controller", address)
    assert show.returncode == 0 and "succeeded" in show.stdout and "/artifacts/prepared-" in show.stdout
    listed = _cli(tmp_path, "runs", "list", "--controller", address)
    assert run_id in listed.stdout
    missing = _cli(tmp_path, "runs", "show", "no-such-run", "--controller", address)
    assert missing.returncode == 2 and "no-such-run" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\nsource: {paths: []}\n")
    refused = _cli(tmp_path, "submit", str(bad), "--controller", address)
    assert refused.returncode == 2 and "source.paths" in refused.stderr
