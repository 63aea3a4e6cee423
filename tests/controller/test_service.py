"""PipelineService over real gRPC on loopback with an S3 store on moto."""

from __future__ import annotations

import grpc
import pytest

from synthtune.controller import Executor
from synthtune.controller.service import PipelineServicer
from synthtune.rpc.client import channel
from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2, pipeline_pb2_grpc
from synthtune.rpc.server import ServerOptions, ServiceBinding, build_server
from synthtune.store import open_store

from .fakes import SPEC, make_stages

pytestmark = pytest.mark.integration
TOKEN = "t0ken"


@pytest.fixture
def controller(s3_store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    store = open_store(s3_store_uri)
    servicer = PipelineServicer(Executor(store, stages=make_stages(tmp_path / "calls.txt", sleep_s=0.2), backoff_s=0.01))
    running = build_server([ServiceBinding(servicer, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, "synthtune.v1.PipelineService")],
                           ServerOptions(port=0, host="127.0.0.1", token=TOKEN))
    yield pipeline_pb2_grpc.PipelineServiceStub(channel(f"127.0.0.1:{running.port}", token=TOKEN))
    running.stop(0)


def test_submit_watch_and_get(controller):
    run = controller.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=SPEC), timeout=30).run
    assert run.run_id.startswith("fake-")
    events = [r.event for r in controller.WatchRun(pipeline_pb2.WatchRunRequest(run_id=run.run_id), timeout=60)]
    assert events[-1].type == "run_finished" and events[-1].run_state == pipeline_pb2.RUN_STATE_SUCCEEDED
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    got = controller.GetRun(pipeline_pb2.GetRunRequest(run_id=run.run_id), timeout=10).run
    assert got.state == pipeline_pb2.RUN_STATE_SUCCEEDED
    assert {s.name for s in got.stages} >= {"prepare", "train:persona", "report"}
    assert got.report_uri.endswith(f"runs/{run.run_id}/report.html")
    listed = controller.ListRuns(pipeline_pb2.ListRunsRequest(), timeout=10).runs
    assert run.run_id in [r.run_id for r in listed]


def test_invalid_spec_is_invalid_argument_listing_problems(controller):
    with pytest.raises(grpc.RpcError) as exc:
        controller.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml="version: 1\nname: x\nsource: {paths: []}\ntrain: {lora: {r: x}}\n"), timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec_yaml:3:10: source.paths" in exc.value.details() and "train.lora.r" in exc.value.details()


def test_unknown_run_is_not_found(controller):
    with pytest.raises(grpc.RpcError) as exc:
        controller.GetRun(pipeline_pb2.GetRunRequest(run_id="missing"), timeout=10)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_cancelled_run_watch_ends_cancelled(controller):
    run = controller.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=SPEC), timeout=30).run
    stream = controller.WatchRun(pipeline_pb2.WatchRunRequest(run_id=run.run_id), timeout=60)
    next(stream)
    controller.CancelRun(pipeline_pb2.CancelRunRequest(run_id=run.run_id), timeout=10)
    with pytest.raises(grpc.RpcError) as exc:
        for _ in stream:
            pass
    assert exc.value.code() == grpc.StatusCode.CANCELLED
    assert controller.GetRun(pipeline_pb2.GetRunRequest(run_id=run.run_id), timeout=10).run.state == pipeline_pb2.RUN_STATE_CANCELLED
