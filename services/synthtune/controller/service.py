"""PipelineService: submit, get, list, watch and cancel runs; runs execute in background threads."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from synthtune.controller.executor import Executor
from synthtune.controller.jobs import adopt_job_results
from synthtune.controller.runs import ACTIVE, FINAL, RunRecord
from synthtune.errors import InvalidInput, NotFound
from synthtune.llm.models import check_base_model
from synthtune.rpc.gen.synthtune.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc
from synthtune.rpc.policy import ServerPolicy
from synthtune.spec import load_spec_text
from synthtune.spec.dataflow import data_destinations
from synthtune.spec.graph import STEPS
from synthtune.spec.pipeline import PipelineSpec

log = logging.getLogger("synthtune.controller")
RUN_STATES = {"pending": 1, "running": 2, "succeeded": 3, "failed": 4, "cancelled": 5}
STAGE_STATES = {"pending": 1, "running": 2, "succeeded": 3, "failed": 4, "cancelled": 5, "cached": 6, "skipped": 7}


def _ts(text: str | None) -> Timestamp:
    ts = Timestamp()
    if text:
        ts.FromJsonString(text.replace("+00:00", "Z"))
    return ts


def run_message(record: RunRecord) -> pipeline_pb2.Run:
    stages = []
    for name, info in record.stages.items():
        handle = info.handle or {}
        execution = (f"{handle.get('object', 'Job')} {handle['job']}" if handle.get("job")
                     else f"operation {handle['operation']}" if handle.get("operation") else "")
        stages.append(pipeline_pb2.StageStatus(
            name=name, state=STAGE_STATES.get(info.state, 0), message=info.message, attempts=info.attempts,  # type: ignore[arg-type]
            artifact=common_pb2.ArtifactRef(**info.artifact) if info.artifact else None, execution=execution,
        ))
    msg = pipeline_pb2.Run(
        run_id=record.run_id, name=record.name, state=RUN_STATES.get(record.status, 0), stages=stages,  # type: ignore[arg-type]
        store_uri=record.store, report_uri=f"{record.store}/{record.report}" if record.report else "",
        create_time=_ts(record.created_at), update_time=_ts(record.updated_at),
    )
    if gate := record.gate:
        msg.gate.CopyFrom(pipeline_pb2.GateResult(
            passed=bool(gate.get("passed")), metric=gate.get("metric") or "", set=gate.get("set") or "", model=gate.get("model") or "",
            gain=float(gate.get("gain") or 0.0), ci_low=float(gate.get("ci_low") or 0.0), ci_high=float(gate.get("ci_high") or 0.0),
            min_gain=float(gate.get("min_gain") or 0.0), reason=gate.get("reason") or ""))
    if record.error:
        msg.error.CopyFrom(common_pb2.ErrorInfo(code="FAILED", message=record.error))
    return msg


def event_message(run_id: str, ev: dict[str, Any]) -> pipeline_pb2.RunEvent:
    art = ev.get("artifact") or {}
    progress = None
    if ev["type"] == "progress":
        progress = common_pb2.ProgressEvent(stage=ev.get("stage", ""), description=ev.get("description", ""),
                                            completed=float(ev.get("completed") or 0), total=float(ev.get("total") or 0), message=ev.get("message", ""))
    return pipeline_pb2.RunEvent(
        run_id=run_id, seq=ev["seq"], type=ev["type"], stage=ev.get("stage", ""), stage_state=STAGE_STATES.get(ev.get("stage_state", ""), 0),  # type: ignore[arg-type]
        run_state=RUN_STATES.get(ev.get("run_state", ""), 0), progress=progress, artifact=common_pb2.ArtifactRef(**art) if art else None,  # type: ignore[arg-type]
        message=ev.get("message", ""), time=_ts(ev.get("time")),
    )


class PipelineServicer(pipeline_pb2_grpc.PipelineServiceServicer):  # type: ignore[misc]
    """Runs execute in this controller's pool while it leads; every replica answers reads and submits."""

    def __init__(self, executor: Executor, max_concurrent_runs: int = 4, leading: bool = True) -> None:
        self.executor = executor
        self.book = executor.runbook
        self.pool = futures.ThreadPoolExecutor(max_workers=max_concurrent_runs, thread_name_prefix="synthtune-run")
        self.leading = threading.Event()
        if leading:
            self.leading.set()
        self._active: set[str] = set()
        self._final: set[str] = set()  # runs seen finished: never looked at again by the scheduler
        self._lock = threading.Lock()

    def start(self, run_id: str) -> bool:
        """Execute ``run_id`` here unless another replica leads or it already executes here."""
        if not self.leading.is_set():
            return False
        with self._lock:
            if run_id in self._active:
                return False
            self._active.add(run_id)

        def work() -> None:
            try:
                if self.leading.is_set():
                    self.executor.execute(run_id)
            except Exception:  # e.g. another process executes it: the scheduler looks again later
                log.exception("run %s not executed here", run_id)
            finally:
                with self._lock:
                    self._active.discard(run_id)

        try:
            self.pool.submit(work)
        except RuntimeError:  # shutting down
            with self._lock:
                self._active.discard(run_id)
            return False
        return True

    def resume_all(self) -> list[str]:
        """Start every run in the store that nobody executes (after a restart, on becoming the leader, every poll).

        A running run is someone else's while its heartbeat is fresh: another controller's (a
        leader handing over) or a `synthtune run` on the same store."""
        started = []
        with self._lock:
            skip = self._final | self._active
        for record in self.book.list(skip=skip):
            if record.status not in ACTIVE:
                self._final.add(record.run_id)
            elif self.executor.orphaned(record) and self.start(record.run_id):
                started.append(record.run_id)
        return started

    def schedule_forever(self, stop: threading.Event, poll_s: float) -> None:
        """Pick up runs that other replicas accepted, and runs left by a controller that died."""
        passes = 0
        while not stop.wait(poll_s):
            passes += 1
            if passes % 30 == 0:  # a finished run may be reopened through another replica: look again now and then
                self._final.clear()
            if self.leading.is_set():
                try:
                    self.resume_all()
                except Exception:  # a store hiccup must not stop the scheduler
                    log.exception("scheduling pass failed")

    def SubmitRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.resume_run_id:
            record = self.book.load(request.resume_run_id)
            self.book.reopen(record)
        else:
            spec = load_spec_text(request.spec_yaml, "spec_yaml", base_dir=request.base_dir or None)
            spec = ServerPolicy.from_env().check_spec(spec, "spec_yaml")
            if request.until and request.until not in STEPS:
                raise InvalidInput(f"until {request.until!r}: choose {', '.join(STEPS)}")
            refuse_external_endpoints(spec, self.executor.config.allow_external_endpoints)
            if request.until not in ("prepare", "generate"):
                check_base_model(spec.train.base_model, self.book.store, spec.base_dir)  # before any Job asks for a GPU
            record = self.book.create(spec, request.spec_yaml, request.until or None)
        self.start(record.run_id)
        return pipeline_pb2.SubmitRunResponse(run=run_message(record))

    def GetRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        record = self.book.load(request.run_id)
        if record.status == "running" and not record.owner:  # stages run by `synthtune job` Jobs, no executor
            record = adopt_job_results(self.book.store, record)
        return pipeline_pb2.GetRunResponse(run=run_message(record))

    def ListRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        runs = self.book.list()
        try:
            start = int(request.page_token or 0)
        except ValueError:
            raise InvalidInput(f"page_token {request.page_token!r} is not one ListRuns returned") from None
        size = request.page_size or 50
        page = runs[start : start + size]
        token = str(start + size) if start + size < len(runs) else ""
        return pipeline_pb2.ListRunsResponse(runs=[run_message(r) for r in page], next_page_token=token)

    def WatchRun(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        unsubscribe = self.book.watch(request.run_id, events.put)
        try:
            record = self.book.load(request.run_id)
            last = request.after_seq
            for ev in record.events:
                if ev["seq"] > last:
                    last = ev["seq"]
                    yield pipeline_pb2.WatchRunResponse(event=event_message(request.run_id, ev))
            status = record.status
            while status not in FINAL and context.is_active():
                try:
                    ev = events.get(timeout=1.0)
                except queue.Empty:
                    if self.executor.running(request.run_id):
                        continue  # executing here: its events come through the queue
                    record = self.book.load(request.run_id)  # another replica may be executing it
                    status = record.status
                    for ev in record.events:
                        if ev["seq"] > last:
                            last = ev["seq"]
                            yield pipeline_pb2.WatchRunResponse(event=event_message(request.run_id, ev))
                    continue
                if ev["seq"] <= last:
                    continue
                last = ev["seq"]
                yield pipeline_pb2.WatchRunResponse(event=event_message(request.run_id, ev))
                if ev["type"] == "run_finished":
                    status = ev.get("run_state", "")
            if status == "cancelled":
                context.abort(grpc.StatusCode.CANCELLED, f"run {request.run_id} was cancelled")
        finally:
            unsubscribe()

    def CancelRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        record = self.executor.cancel(request.run_id)
        return pipeline_pb2.CancelRunResponse(run=run_message(record))


def refuse_external_endpoints(spec: PipelineSpec, allowed: bool) -> None:
    """A controller that keeps records in the cluster refuses a run that would send them outside."""
    outside = [d for d in data_destinations(spec) if d["external"]]
    if outside and not allowed:
        names = "; ".join(f"{d['role']} at {d['endpoint']}" for d in outside)
        raise InvalidInput(f"this controller keeps records inside the cluster, but the pipeline sends them to {names} "
                           "(an in-cluster teacher has a cluster address; the chart's teacher.allowExternal=true allows external ones)")


__all__ = ["NotFound", "PipelineServicer", "refuse_external_endpoints", "run_message"]
