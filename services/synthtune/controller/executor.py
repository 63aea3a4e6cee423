"""Runs a pipeline's stage graph: skip what is done, retry retryable faults, stop on permanent ones.

Stages run as soon as the stages they read from are done, up to ``max_parallel_stages`` at
once (the generate and train stages of different methods are independent). Each stage runs
on the runner its kind is configured for: in process, a stage service over gRPC, or a
Kubernetes Job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random

from synthtune.controller.config import ControllerConfig
from synthtune.controller.runner import InProcessRunner, Runner, StageFn, StageTask, default_stages
from synthtune.controller.runs import DONE, FINAL, RunBook, RunRecord, RunState, StageState
from synthtune.errors import Cancelled, RetryableError, StageSkipped, SynthtuneError, error_kind
from synthtune.progress import Progress, ProgressEvent
from synthtune.spec import PipelineSpec, graph, load_spec_text
from synthtune.store import ArtifactRef, Store

log = logging.getLogger("synthtune.controller")


class Detached(Exception):
    """This controller is shutting down: it leaves the run as it is in the store for the next one."""


def _created_before(store: Store, ref: ArtifactRef, started: float) -> bool:
    try:
        created = dt.datetime.fromisoformat(store.open(ref).created_at).timestamp()
    except (SynthtuneError, ValueError):
        return False
    return created < started


class Executor:
    """Executes runs against a store with injectable stage functions and runners."""

    def __init__(self, store: Store, runbook: RunBook | None = None, stages: dict[str, StageFn] | None = None,
                 max_attempts: int | None = None, backoff_s: float | None = None, config: ControllerConfig | None = None,
                 runners: dict[str, Runner] | None = None) -> None:
        self.store = store
        self.runbook = runbook or RunBook(store)
        self.config = config or ControllerConfig()
        self.stages = {**default_stages(), **(stages or {})}
        self.max_attempts = max_attempts if max_attempts is not None else self.config.retry.max_attempts
        self.backoff_s = backoff_s if backoff_s is not None else self.config.retry.backoff_s
        self.runners: dict[str, Runner] = {"inprocess": InProcessRunner(self.stages), **(runners or {})}
        self._progress: dict[str, Progress] = {}
        self._lock = threading.Lock()
        self._shutdown = threading.Event()
        self.identity = f"{socket.gethostname()}-{os.getpid()}"
        self._records: dict[str, RunRecord] = {}  # the records of the runs executing here
        self._beats: dict[str, tuple[float, float]] = {}  # run id -> (heartbeat seen, when it changed, monotonic)

    def shutdown(self) -> None:
        """Stop writing run records and stop scheduling stages; runs stay as they are, to be resumed.

        Their heartbeat is zeroed on the way out, so the next controller takes them at once."""
        self._shutdown.set()
        with self.runbook.lock:
            with self._lock:
                records = list(self._records.values())
            for record in records:  # a record that cannot be written: the next controller waits for its heartbeat to go stale
                record.heartbeat = 0.0
                self.runbook.save_or_log(record, "handed over")
            self.runbook.close()
        for runner in self.runners.values():
            close = getattr(runner, "close", None)
            if close is not None:
                close()

    # runners ------------------------------------------------------------------------------
    def runner(self, kind: str) -> Runner:
        name = self.config.runner(kind)
        with self._lock:
            if name not in self.runners:
                if name == "grpc":
                    from synthtune.controller.grpc_runner import GrpcRunner

                    self.runners[name] = GrpcRunner(self.config.services, tls_ca=self.config.services_tls_ca)
                else:
                    from synthtune.controller.kube import KubernetesRunner

                    self.runners[name] = KubernetesRunner(self.config.kubernetes)
            return self.runners[name]

    # control ------------------------------------------------------------------------------
    def running(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._progress

    def cancel(self, run_id: str) -> RunRecord:
        """Ask a run to stop. Only a cancel request is written: whoever executes the run (or starts it
        next: a pending run is cancelled as it starts) finishes it, so no two writers race on run.json."""
        record = self.runbook.load(run_id)
        if record.status in FINAL:
            return record
        self.runbook.request_cancel(run_id)
        with self._lock:
            progress = self._progress.get(run_id)
        if progress is not None:
            progress.cancel()
        return record

    def interrupted(self, run_id: str) -> RunRecord:
        """This process stops executing ``run_id`` (Ctrl-C): record it cancelled (resumable), then write nothing more.

        The record in memory is the one the stage threads still update, so it is finished under the
        run book's lock and the book is closed in the same hold: a stage thread's late save is dropped."""
        with self._lock:
            record = self._records.get(run_id) or self.runbook.load(run_id)
        with self.runbook.lock:
            if record.status not in FINAL:
                for info in record.stages.values():
                    if info.state == "running":
                        info.state, info.message = "cancelled", "interrupted"
                record.heartbeat = 0.0  # nobody executes it now
                self._finish(record, "cancelled", "interrupted by the user", "cancelled")
            self.runbook.close()
        return record

    def orphaned(self, record: RunRecord) -> bool:
        """Whether nobody executes this unfinished run: pending, or running with a heartbeat that stopped.

        A heartbeat is judged by this process's own clock (it must stop changing for stale_after_s),
        never by comparing another machine's timestamp with ours; a heartbeat that is missing, or
        zeroed by a controller or CLI that let the run go, counts at once."""
        if record.status == "pending":
            return True
        if record.status != "running" or self.running(record.run_id):
            return False
        beat = record.heartbeat
        if beat == 0.0:
            return True
        with self._lock:
            seen = self._beats.get(record.run_id)
            if seen is None or seen[0] != beat:
                self._beats[record.run_id] = (beat, time.monotonic())
                return False
        return time.monotonic() - seen[1] > self.config.stale_after_s

    # execution ----------------------------------------------------------------------------
    def execute(self, run_id: str, listener: Callable[[ProgressEvent], None] | None = None) -> RunRecord:
        """Run every unfinished stage of ``run_id``; returns the final record.

        A run another process is executing (its heartbeat still beats) is refused, not doubled."""
        record = self.runbook.load(run_id)
        if record.status in FINAL:
            return record
        if record.status == "running" and record.owner != self.identity and not self.orphaned(record):
            raise SynthtuneError(f"run {run_id} is executing on {record.owner or 'another controller'}: "
                                 f"watch it, or resume it once that stops (after {self.config.stale_after_s:.0f} s without a heartbeat)")
        progress = Progress(run_id)
        if listener is not None:
            progress.add_listener(listener)
        progress.add_listener(self._forwarder(record))
        with self._lock:
            if run_id in self._progress:
                raise SynthtuneError(f"run {run_id} is already executing in this controller")
            self._progress[run_id] = progress
            self._records[run_id] = record
        try:
            if self.runbook.cancel_requested(run_id):
                raise Cancelled("cancelled by the user")
            spec = load_spec_text(record.spec_yaml, f"run {run_id} spec", base_dir=self._base_dir(record))
            with self.runbook.lock:
                record.status, record.owner, record.heartbeat = "running", self.identity, time.time()
            self.runbook.event(record, "run_started", message=f"executing on {self.identity}")
            self._run_graph(spec, record, progress)
            self._finish(record, "succeeded", "", "")
        except Detached:
            log.info("run %s left to the next controller", run_id)
        except Exception as exc:  # any failure ends the run with its message
            if not isinstance(exc, SynthtuneError):
                log.exception("run %s failed", run_id)
            kind = error_kind(exc)
            message = str(exc) if isinstance(exc, SynthtuneError) else f"{type(exc).__name__}: {exc}"
            self._finish(record, "cancelled" if kind == "cancelled" else "failed", message, kind)
        finally:
            with self._lock:
                self._progress.pop(run_id, None)
                self._records.pop(run_id, None)
        return record

    def _base_dir(self, record: RunRecord) -> str | None:
        # In a cluster the records live on a volume mounted at the same place in every service.
        return self.config.service_base_dir or record.base_dir

    def _forwarder(self, record: RunRecord) -> Callable[[ProgressEvent], None]:
        last_emit = [0.0]

        def forward(ev: ProgressEvent) -> None:
            now = time.monotonic()
            if ev.message or now - last_emit[0] > 0.5:  # progress events thinned to two a second
                last_emit[0] = now
                self.runbook.event(record, "progress", ev.stage, persist=bool(ev.message), description=ev.description,
                                   completed=ev.completed, total=ev.total, message=ev.message)

        return forward

    def _run_graph(self, spec: PipelineSpec, record: RunRecord, progress: Progress) -> None:
        names = list(record.stages)
        todo = [n for n in names if record.stages[n].state not in DONE]
        parallel = max(1, self.config.max_parallel_stages)
        failure: BaseException | None = None
        running: set[str] = set()
        finished: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()

        def work(stage: str) -> None:
            try:
                self._run_stage(spec, record, stage, progress.child(stage))
            except BaseException as exc:  # noqa: BLE001 - handed to the scheduling loop, which raises it
                finished.put((stage, exc))
            else:
                finished.put((stage, None))

        # Stages run in daemon threads: an interrupted CLI (Ctrl-C in the main thread) exits at
        # once instead of waiting for a stage that is still busy.
        try:
            while todo or running:
                if failure is None and not progress.cancelled:
                    for stage in [s for s in todo if all(record.stages[d].state in DONE for d in graph.dependencies(s, names))]:
                        if len(running) >= parallel:
                            break
                        todo.remove(stage)
                        running.add(stage)
                        threading.Thread(target=work, args=(stage,), name=f"stage-{stage}", daemon=True).start()
                if not running:
                    break
                if self._shutdown.is_set():
                    raise Detached(record.run_id)
                try:
                    stage, exc = finished.get(timeout=self.config.poll_s)
                except queue.Empty:
                    stage, exc = "", None
                self._bookkeeping(record, progress)
                if not stage:
                    continue
                running.discard(stage)
                if exc is not None and (failure is None or isinstance(failure, Cancelled)):
                    failure = exc
                    if not isinstance(exc, Cancelled):
                        progress.cancel()  # siblings stop: the run has failed
        except (Detached, KeyboardInterrupt):
            progress.cancel()  # Ctrl-C: the process leaves at once; the stage threads are daemons
            raise
        except BaseException:
            progress.cancel()
            while running:  # nothing may still write the record once the run is reported ended
                running.discard(finished.get()[0])
            raise
        if failure is not None:
            raise failure
        if progress.cancelled or todo:
            raise Cancelled("cancelled by the user")

    def _bookkeeping(self, record: RunRecord, progress: Progress) -> None:
        """Between stage events: heartbeat, and a cancel request from any replica. A store hiccup here
        is logged, never fatal: the stages are still running."""
        if time.time() - record.heartbeat > self.config.heartbeat_s:
            with self.runbook.lock:  # alive, even through a stage that reports nothing for an hour
                record.heartbeat = time.time()
                self.runbook.save_or_log(record, "heartbeat")
        try:
            if not progress.cancelled and self.runbook.cancel_requested(record.run_id):
                progress.cancel()
        except Exception as exc:  # noqa: BLE001 - asked again at the next poll
            log.warning("run %s: reading its cancel request failed (asked again): %s", record.run_id, exc)

    def _task(self, spec: PipelineSpec, record: RunRecord, name: str) -> StageTask:
        inputs = graph.inputs_for(name, list(record.stages), record.artifacts())
        info = record.stages[name]
        with self.runbook.lock:
            if info.handle is None:
                info.handle = {}
            handle = info.handle
        return StageTask(run_id=record.run_id, stage=name, spec=spec, spec_yaml=record.spec_yaml, base_dir=self._base_dir(record),
                         inputs=inputs, attempt=info.submissions, handle=handle, save=lambda: self.runbook.save_or_log(record, "handle"),
                         lock=self.runbook.lock)

    def _attempt(self, spec: PipelineSpec, record: RunRecord, name: str, progress: Progress) -> ArtifactRef | None:
        if graph.stage(name).in_controller:  # the report describes the finished run; the record itself is finished after it
            _, html_key = self.stages[graph.kind_of(name)](self.store, record.report_input("succeeded"), spec)
            with self.runbook.lock:
                record.report = html_key
            return None
        task = self._task(spec, record, name)
        return self.runner(task.kind).run(task, self.store, progress)

    def _run_stage(self, spec: PipelineSpec, record: RunRecord, name: str, progress: Progress) -> None:
        """Attempts of one stage until it succeeds, is skipped, fails for good or runs out of attempts."""
        info = record.stages[name]
        book = self.runbook
        started = time.time()

        def attempt() -> ArtifactRef | None:
            nonlocal started
            started = time.time()
            with book.lock:  # submissions name Jobs and operations: unlike attempts, a reopened run never resets them
                info.state, info.attempts, info.submissions = "running", info.attempts + 1, info.submissions + 1
                info.message, info.started_at = "", started
            book.event(record, "stage_started", name)
            progress.check_cancelled()
            return self._attempt(spec, record, name, progress)

        try:
            ref = self._retrying(record, name, progress)(attempt)
        except StageSkipped as exc:  # nothing to do: later stages go on without its artifact
            self._settle(record, name, "skipped", None, started, "stage_skipped", str(exc))
            return
        except BaseException as exc:
            self._stage_failed(record, name, exc)
            raise
        cached = ref is not None and _created_before(self.store, ref, started)
        if graph.kind_of(name) == "evaluate" and ref is not None and (gate := self.store.open(ref).stats.get("gate")) is not None:
            with book.lock:  # the promotion gate's verdict travels with the run (runs show, gRPC Run.gate, exit 3)
                record.gate = gate
        self._settle(record, name, "cached" if cached else "succeeded", ref, started, "stage_finished",
                     "reused from the cache" if cached else "")

    def _retrying(self, record: RunRecord, name: str, progress: Progress) -> Retrying:
        """Retries of retryable failures: exponential backoff (at least the delay the error asks for) plus a
        random jitter of up to one first delay, so runs that failed together do not retry in lockstep;
        waits that end on cancel, attempts counted in the record so a restarted controller goes on counting."""
        cap = self.config.retry.max_backoff_s
        info = record.stages[name]
        jitter = wait_random(0, self.backoff_s)

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            asked = float(exc.delay) if isinstance(exc, RetryableError) else 0.0
            return float(min(max(asked, self.backoff_s * 2 ** (info.attempts - 1)) + jitter(rs), cap))

        def before_sleep(rs: RetryCallState) -> None:
            with self.runbook.lock:
                info.state = "pending"
                info.message = f"retrying in {rs.upcoming_sleep:.0f}s: {rs.outcome.exception() if rs.outcome else ''}"
            self.runbook.event(record, "stage_retry", name, message=info.message)

        def sleep(seconds: float) -> None:
            if progress.wait_cancelled(seconds):
                raise Cancelled("cancelled by the user")

        return Retrying(retry=retry_if_exception_type(RetryableError), wait=wait, sleep=sleep, before_sleep=before_sleep, reraise=True,
                        stop=lambda rs: info.attempts >= self.max_attempts or progress.cancelled)

    def _settle(self, record: RunRecord, name: str, state: StageState, ref: ArtifactRef | None, started: float, event: str,
                message: str) -> None:
        info = record.stages[name]
        with self.runbook.lock:
            info.state, info.artifact, info.handle = state, ref.to_dict() if ref else None, None
            info.seconds = round(time.time() - started, 3)
            if state == "skipped":
                info.message = message
        self.runbook.event(record, event, name, message=message, artifact=info.artifact)

    def _stage_failed(self, record: RunRecord, name: str, exc: BaseException) -> None:
        info = record.stages[name]
        if isinstance(exc, Cancelled):
            with self.runbook.lock:
                info.state, info.message = "cancelled", "cancelled"
            self.runbook.event(record, "stage_cancelled", name, message="cancelled")
            return
        message = str(exc) if isinstance(exc, SynthtuneError) else f"{type(exc).__name__}: {exc}"
        with self.runbook.lock:
            info.state, info.message, info.error_kind = "failed", message, error_kind(exc)
        self.runbook.event(record, "stage_failed", name, message=message)

    def _finish(self, record: RunRecord, status: RunState, error: str, kind: str) -> None:
        with self.runbook.lock:
            record.status, record.error, record.error_kind = status, error or None, kind or None
        if status == "succeeded" and record.gate and not record.gate.get("passed"):
            self.runbook.event(record, "gate_failed", message=record.gate.get("reason") or "")
        self.runbook.event(record, "run_finished", message=error or status)
        kube_kinds = [k for k in graph.RUNNER_KINDS if self.config.runner(k) == "kubernetes"]
        if status != "succeeded" and kube_kinds:  # no Job of a run that ended may keep a GPU
            cleanup = getattr(self.runner(kube_kinds[0]), "cleanup", None)  # one runner serves every such kind
            if cleanup is not None:
                cleanup(record.run_id)
