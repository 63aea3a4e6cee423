"""Client side of PipelineService for `synthtune submit` and `synthtune runs`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from synthtune.errors import InvalidInput, SynthtuneError
from synthtune.rpc.client import channel
from synthtune.rpc.client import domain_error as rpc_domain_error
from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2, pipeline_pb2_grpc
from synthtune.rpc.tls import ClientTLS

STATE_NAMES = {v: k for k, v in {"pending": 1, "running": 2, "succeeded": 3, "failed": 4, "cancelled": 5}.items()}


@dataclass
class RunSummary:
    run_id: str
    name: str
    state: str
    store_uri: str


def _stub(target: str, tls: ClientTLS | None) -> Any:
    if tls is None:
        return pipeline_pb2_grpc.PipelineServiceStub(channel(target))
    return pipeline_pb2_grpc.PipelineServiceStub(channel(target, tls_ca=tls.ca, tls_cert=tls.cert, tls_key=tls.key))


def domain_error(exc: grpc.RpcError, target: str, tls: ClientTLS | None) -> SynthtuneError:
    return rpc_domain_error(exc, f"controller at {target}", tls or ClientTLS.resolve())


def _call(fn: Callable[[], Any], target: str, tls: ClientTLS | None) -> Any:
    try:
        return fn()
    except grpc.RpcError as exc:
        raise domain_error(exc, target, tls) from None


def _summary(run: Any) -> RunSummary:
    return RunSummary(run.run_id, run.name, STATE_NAMES.get(run.state, "unknown"), run.store_uri)


def submit_run(target: str, pipeline: Path, until: str | None, tls: ClientTLS | None = None) -> RunSummary:
    if not pipeline.is_file():
        raise InvalidInput(f"{pipeline}: no such pipeline file")
    req = pipeline_pb2.SubmitRunRequest(spec_yaml=pipeline.read_text(encoding="utf-8"), until=until or "", base_dir=str(pipeline.resolve().parent))
    return _summary(_call(lambda: _stub(target, tls).SubmitRun(req, timeout=60), target, tls).run)


def list_runs(target: str, tls: ClientTLS | None = None) -> list[RunSummary]:
    return [_summary(r) for r in _call(lambda: _stub(target, tls).ListRuns(pipeline_pb2.ListRunsRequest(page_size=100), timeout=30), target, tls).runs]


def show_run(target: str, run_id: str, tls: ClientTLS | None = None) -> str:
    run = _call(lambda: _stub(target, tls).GetRun(pipeline_pb2.GetRunRequest(run_id=run_id), timeout=30), target, tls).run
    lines = [f"run {run.run_id} ({run.name}): {STATE_NAMES.get(run.state, 'unknown')}"]
    for s in run.stages:
        where = f" [{s.execution}]" if s.execution else ""
        lines.append(f"  {s.name:<24} {pipeline_pb2.StageState.Name(s.state).removeprefix('STAGE_STATE_').lower():<10} {s.artifact.uri}{where} {s.message}".rstrip())
    if run.report_uri:
        lines.append(f"report: {run.report_uri}")
    if run.error.message:
        lines.append(f"error: {run.error.message}")
    return "\n".join(lines)


def watch_run(target: str, run_id: str, emit: Callable[[str], None], tls: ClientTLS | None = None) -> str:
    state = "unknown"
    try:
        for resp in _stub(target, tls).WatchRun(pipeline_pb2.WatchRunRequest(run_id=run_id)):
            ev = resp.event
            state = STATE_NAMES.get(ev.run_state, state)
            detail = ev.message or (f"{ev.progress.completed:g}/{ev.progress.total:g} {ev.progress.description}" if ev.type == "progress" else "")
            emit(f"{ev.time.ToJsonString()} {ev.type:<15} {ev.stage:<20} {detail}")
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.CANCELLED:
            return "cancelled"
        raise domain_error(exc, target, tls) from None
    return state


def cancel_run(target: str, run_id: str, tls: ClientTLS | None = None) -> str:
    run = _call(lambda: _stub(target, tls).CancelRun(pipeline_pb2.CancelRunRequest(run_id=run_id), timeout=30), target, tls).run
    return f"run {run.run_id}: {STATE_NAMES.get(run.state, 'unknown')}"
