"""PipelineService over real gRPC on loopback with an S3 store on moto."""

from __future__ import annotations

import time

import grpc
import pytest

from synthtune.controller import Executor
from synthtune.controller.service import PipelineServicer
from synthtune.rpc.client import channel
from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2, pipeline_pb2_grpc
from synthtune.rpc.server import ServerOptions, ServiceBinding, build_server
from synthtune.store import open_store

from .fakes import SPEC, calls, make_stages

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
    servicer.executor.shutdown()


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


@pytest.fixture
def replicas(s3_store_uri, tmp_path, monkeypatch):
    """Two controllers on one S3 store: a leader that executes runs and a standby that only answers."""
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    made = []

    def replica(leading: bool):
        store = open_store(s3_store_uri)
        servicer = PipelineServicer(Executor(store, stages=make_stages(tmp_path / "calls.txt", sleep_s=0.3), backoff_s=0.01),
                                    leading=leading)
        running = build_server([ServiceBinding(servicer, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server,
                                               "synthtune.v1.PipelineService")], ServerOptions(port=0, host="127.0.0.1", token=TOKEN))
        made.append((running, servicer))
        return servicer, pipeline_pb2_grpc.PipelineServiceStub(channel(f"127.0.0.1:{running.port}", token=TOKEN))

    yield replica
    for running, servicer in made:
        running.stop(0)
        servicer.executor.shutdown()  # runs still executing write nothing more once the test's S3 is gone


def test_a_standby_accepts_runs_that_the_leader_executes_and_streams_them(replicas, tmp_path):
    leader, _ = replicas(leading=True)
    standby_servicer, standby = replicas(leading=False)
    run = standby.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=SPEC), timeout=30).run
    time.sleep(0.5)
    assert standby.GetRun(pipeline_pb2.GetRunRequest(run_id=run.run_id), timeout=10).run.state == pipeline_pb2.RUN_STATE_PENDING
    assert calls(tmp_path / "calls.txt") == []  # the standby executes nothing
    assert leader.resume_all() == [run.run_id]  # what the leader's scheduler does every poll
    events = [r.event for r in standby.WatchRun(pipeline_pb2.WatchRunRequest(run_id=run.run_id), timeout=60)]
    assert events[-1].type == "run_finished" and events[-1].run_state == pipeline_pb2.RUN_STATE_SUCCEEDED
    assert {"stage_started", "stage_finished"} <= {e.type for e in events}
    assert calls(tmp_path / "calls.txt").count("prepare") == 1
    assert standby_servicer.resume_all() == []


def test_cancel_through_the_standby_stops_the_run_on_the_leader(replicas, tmp_path):
    leader, _ = replicas(leading=True)
    _, standby = replicas(leading=False)
    run = standby.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=SPEC), timeout=30).run
    leader.resume_all()
    deadline = time.time() + 20
    while time.time() < deadline and "prepare" not in calls(tmp_path / "calls.txt"):
        time.sleep(0.05)
    standby.CancelRun(pipeline_pb2.CancelRunRequest(run_id=run.run_id), timeout=10)
    while time.time() < deadline:
        state = standby.GetRun(pipeline_pb2.GetRunRequest(run_id=run.run_id), timeout=10).run.state
        if state == pipeline_pb2.RUN_STATE_CANCELLED:
            break
        time.sleep(0.1)
    assert state == pipeline_pb2.RUN_STATE_CANCELLED
    assert "report" not in calls(tmp_path / "calls.txt")


def test_the_leader_leaves_a_run_with_a_fresh_heartbeat_to_whoever_executes_it(replicas, tmp_path):
    leader, _ = replicas(leading=True)
    leader.executor.config = leader.executor.config.model_copy(update={"stale_after_s": 0.5})
    book = leader.book
    from synthtune.spec import load_spec_text

    record = book.create(load_spec_text(SPEC), SPEC, None)
    # e.g. a `synthtune run` on the same store, on a laptop whose clock is an hour behind
    record.status, record.owner, record.heartbeat = "running", "laptop-123", time.time() - 3600
    book.save(record)
    assert leader.resume_all() == []
    for _ in range(3):  # it keeps beating: never taken over, whatever its clock says
        time.sleep(0.3)
        record.heartbeat += 30
        book.save(record)
        assert leader.resume_all() == []
    time.sleep(0.7)  # it stopped beating (that process died)
    assert leader.resume_all() == [record.run_id]


def test_a_run_left_by_a_controller_that_shut_down_is_taken_at_once(replicas, tmp_path):
    leader, _ = replicas(leading=True)
    from synthtune.spec import load_spec_text

    record = leader.book.create(load_spec_text(SPEC), SPEC, None)
    record.status, record.owner, record.heartbeat = "running", "old-pod-1", 0.0  # what Executor.shutdown leaves
    leader.book.save(record)
    assert leader.resume_all() == [record.run_id]


def test_a_base_model_neither_stored_nor_allowed_from_the_hub_is_refused_at_submit(controller, monkeypatch, tmp_path):
    """Refused before a run exists, so no training Job (and no GPU) is ever requested."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    spec = SPEC + "train: {base_model: acme/plant-7b}\n"
    with pytest.raises(grpc.RpcError) as exc:
        controller.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=spec), timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "train.base_model 'acme/plant-7b' is neither in the store" in exc.value.details()
    assert controller.ListRuns(pipeline_pb2.ListRunsRequest(), timeout=10).runs == []
    run = controller.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=spec, until="generate"), timeout=10).run
    assert run.run_id  # a run that stops before training needs no base model


def test_a_controller_that_keeps_records_in_the_cluster_refuses_an_external_teacher(s3_store_uri, tmp_path, monkeypatch):
    from synthtune.controller.config import ControllerConfig

    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    executor = Executor(open_store(s3_store_uri), stages=make_stages(tmp_path / "calls.txt"), config=ControllerConfig(allow_external_endpoints=False))
    servicer = PipelineServicer(executor)
    running = build_server([ServiceBinding(servicer, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, "synthtune.v1.PipelineService")],
                           ServerOptions(port=0, host="127.0.0.1", token=TOKEN))
    try:
        stub = pipeline_pb2_grpc.PipelineServiceStub(channel(f"127.0.0.1:{running.port}", token=TOKEN))
        external = SPEC.replace("generate:\n", "generate:\n  teacher: {backend: openai, model: gpt-4o-mini}\n")
        with pytest.raises(grpc.RpcError) as exc:
            stub.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=external, until="generate"), timeout=10)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "teacher (generate) at https://api.openai.com/v1" in exc.value.details()
        in_cluster = SPEC.replace("generate:\n", "generate:\n  teacher: {backend: openai, model: t, base_url: 'http://synthtune-teacher:8000/v1'}\n")
        run = stub.SubmitRun(pipeline_pb2.SubmitRunRequest(spec_yaml=in_cluster, until="prepare"), timeout=10).run
        record = open_store(s3_store_uri).get_json(f"runs/{run.run_id}/run.json")
        assert record["data_destinations"][0] == {"role": "teacher (generate)", "backend": "openai", "model": "t",
                                                  "endpoint": "http://synthtune-teacher:8000/v1", "external": False}
    finally:
        running.stop(0)
        executor.shutdown()
