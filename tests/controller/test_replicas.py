"""The controller spreads stage attempts over a stage service's replicas round-robin, each attempt staying on its replica."""

from __future__ import annotations

import socket

import pytest

from synthtune.controller import Executor, RunBook
from synthtune.controller.config import ControllerConfig
from synthtune.controller.grpc_runner import GrpcRunner, resolve_replicas
from synthtune.rpc.operations import OperationManager
from synthtune.rpc.server import build_server
from synthtune.rpc.stages import stage_bindings
from synthtune.spec import load_spec_text
from synthtune.store import open_store

from .fakes import SPEC, make_stages

pytestmark = pytest.mark.integration
TOKEN = "replica-t0ken"
KINDS = {"prepare": "dataprep", "generate": "generator", "train": "trainer", "evaluate": "evaluator"}


def _replica(host: str, port: int, count_file):  # type: ignore[no-untyped-def]
    """One replica of all four stage services on host:port, recording the stages it ran in count_file."""
    ops = OperationManager(max_concurrent=2)
    fakes = make_stages(count_file)
    server = build_server(stage_bindings(list(KINDS.values()), ops, {svc: fakes[kind] for kind, svc in KINDS.items()}),
                          port=port, host=host, token=TOKEN)
    return server, ops


def _run(tmp_path, target: str, resolve=resolve_replicas):  # type: ignore[no-untyped-def]
    store = open_store(str(tmp_path / "store"))
    runner = GrpcRunner(dict.fromkeys(KINDS, target), token=TOKEN, watch_window_s=0.5, resolve=resolve)
    config = ControllerConfig(runners=dict.fromkeys(KINDS, "grpc"), services=dict.fromkeys(KINDS, target), poll_s=0.05)
    ex = Executor(store, RunBook(store), {"report": make_stages(tmp_path / "report.txt")["report"]}, backoff_s=0.01, config=config,
                  runners={"grpc": runner})
    try:
        return ex.execute(ex.runbook.create(load_spec_text(SPEC), SPEC, None).run_id)
    finally:
        runner.close()


def _ran(path) -> list[str]:  # type: ignore[no-untyped-def]
    return path.read_text().split() if path.exists() else []


def test_two_replicas_behind_one_name_both_receive_work(tmp_path, monkeypatch):
    """A headless Service's name resolves to one address per pod: here 127.0.0.1 and 127.0.0.2 on one port."""
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    replicas = [_replica(f"127.0.0.{i}", port, tmp_path / f"replica{i}.txt") for i in (1, 2)]
    asked: list[str] = []

    def headless(target: str) -> list[str]:
        asked.append(target)
        return [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]

    try:
        record = _run(tmp_path, f"dns:///stages.synthtune.svc:{port}", headless)
    finally:
        for server, ops in replicas:
            server.stop(0)
            ops.shutdown()
    assert record.status == "succeeded", record.error
    one, two = _ran(tmp_path / "replica1.txt"), _ran(tmp_path / "replica2.txt")
    assert one and two, (one, two)  # both replicas got stage attempts
    assert sorted(one + two) == sorted(["prepare", "generate:record_qa", "generate:persona", "train:record_qa", "train:persona", "evaluate"])
    assert set(asked) == {f"dns:///stages.synthtune.svc:{port}"}


def test_a_comma_separated_list_is_a_set_of_replicas_and_a_name_resolves_through_dns(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    a = _replica("127.0.0.1", 0, tmp_path / "a.txt")
    b = _replica("127.0.0.1", 0, tmp_path / "b.txt")
    try:
        record = _run(tmp_path, f"127.0.0.1:{a[0].port},127.0.0.1:{b[0].port}")
    finally:
        for server, ops in (a, b):
            server.stop(0)
            ops.shutdown()
    assert record.status == "succeeded", record.error
    assert _ran(tmp_path / "a.txt") and _ran(tmp_path / "b.txt")
    assert resolve_replicas("127.0.0.1:5") == ["127.0.0.1:5"]  # one address: the target itself, name kept for TLS
    assert resolve_replicas("a:1, b:2") == ["a:1", "b:2"]
    assert resolve_replicas("no-such-host.invalid:5") == ["no-such-host.invalid:5"]
