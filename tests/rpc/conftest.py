"""Fixtures for the gRPC tests: real servers on loopback, a fake stage, artifacts in a file store."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from rpc_helpers import SPEC, TOKEN, make_artifact  # noqa: F401 - re-exported for the fixtures

from synthtune.rpc.client import channel
from synthtune.rpc.logs import JsonFormatter
from synthtune.rpc.operations import OperationManager
from synthtune.rpc.server import RunningServer, build_server
from synthtune.rpc.stages import stage_bindings
from synthtune.store import ArtifactRef, Store


class FakeStage:
    """A stage whose behaviour each test sets; records the calls it gets."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.raise_exc: BaseException | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.calls: list[dict[str, Any]] = []

    def __call__(self, spec: Any, inputs: dict[str, ArtifactRef], store: Store, progress: Any, **kwargs: Any) -> ArtifactRef:
        self.calls.append({"spec": spec, "inputs": dict(inputs), "store": store, **kwargs})
        progress.start(2, f"fake {self.kind}")
        progress.advance(1)
        self.started.set()
        while not self.gate.wait(0.02):
            progress.check_cancelled()
        if self.raise_exc is not None:
            raise self.raise_exc
        progress.advance(1)
        return ArtifactRef(self.kind, f"{self.kind}-abc", f"file:///x/artifacts/{self.kind}-abc")

    def reset(self) -> None:
        self.raise_exc = None
        self.gate.set()
        self.started.clear()
        self.calls.clear()


@dataclass
class StageServer:
    running: RunningServer
    ops: OperationManager
    fakes: dict[str, FakeStage]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def channel(self, token: str | None = TOKEN) -> grpc.Channel:
        return channel(self.target, token=token)


@pytest.fixture(scope="module")
def stage_server() -> Iterator[StageServer]:
    """One server with every stage service (fake stages), the token and a metrics port."""
    fakes = {name: FakeStage(kind) for name, kind in
             [("dataprep", "prepared"), ("generator", "synthetic"), ("trainer", "adapter"), ("evaluator", "evaluation")]}
    ops = OperationManager(max_concurrent=4)
    running = build_server(stage_bindings(list(fakes), ops, dict(fakes)), port=0, host="127.0.0.1", token=TOKEN, metrics_port=0)
    yield StageServer(running, ops, fakes)
    for fake in fakes.values():
        fake.gate.set()
    running.stop(0)
    ops.shutdown()


@pytest.fixture
def server(stage_server: StageServer) -> StageServer:
    for fake in stage_server.fakes.values():
        fake.reset()
    return stage_server


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """synthtune.rpc's log lines, as the JSON formatter writes them, parsed back."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("synthtune.rpc")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)
