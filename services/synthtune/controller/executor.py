"""Runs a pipeline's stage graph: skip what is done, retry retryable faults, stop on permanent ones."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from synthtune.controller.runs import RunBook
from synthtune.errors import Cancelled, InvalidInput, RetryableError, SynthtuneError
from synthtune.progress import Progress, ProgressEvent
from synthtune.spec import PipelineSpec, load_spec_text
from synthtune.store import ArtifactRef, Store

log = logging.getLogger("synthtune.controller")
StageFn = Callable[..., Any]


def default_stages() -> dict[str, StageFn]:
    """The real stage entry points, imported on first use."""

    def lazy(module: str, attr: str = "run") -> StageFn:
        def call(*args: Any, **kwargs: Any) -> Any:
            import importlib

            return getattr(importlib.import_module(module), attr)(*args, **kwargs)

        return call

    return {"prepare": lazy("synthtune.dataprep"), "generate": lazy("synthtune.generator"), "train": lazy("synthtune.trainer"),
            "evaluate": lazy("synthtune.evaluator"), "report": lazy("synthtune.evaluator.report", "write_report")}


class Executor:
    """Executes runs against a store with injectable stage functions (real ones by default)."""

    def __init__(self, store: Store, runbook: RunBook | None = None, stages: dict[str, StageFn] | None = None,
                 max_attempts: int = 3, backoff_s: float = 2.0) -> None:
        self.store = store
        self.runbook = runbook or RunBook(store)
        self.stages = {**default_stages(), **(stages or {})}
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._progress: dict[str, Progress] = {}
        self._lock = threading.Lock()

    def cancel(self, run_id: str) -> dict[str, Any]:
        record = self.runbook.load(run_id)
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return record
        record["cancel_requested"] = True
        self.runbook.save(record)
        with self._lock:
            progress = self._progress.get(run_id)
        if progress is not None:
            progress.cancel()
        else:  # not executing here: mark it directly
            self._finish(record, "cancelled", "cancelled by the user")
        return self.runbook.load(run_id)

    def _inputs(self, record: dict[str, Any], stage: str) -> dict[str, Any]:
        def ref(name: str) -> ArtifactRef | None:
            art = record["stages"].get(name, {}).get("artifact")
            return ArtifactRef(**art) if art else None

        if stage.startswith("generate:"):
            return {"prepared": ref("prepare")}
        if stage.startswith("train:"):
            return {"prepared": ref("prepare"), "synthetic": ref(f"generate:{stage.split(':', 1)[1]}")}
        if stage == "evaluate":
            adapters = {f"adapter:{n.split(':', 1)[1]}": ref(n) for n in record["stages"] if n.startswith("train:")}
            return {"prepared": ref("prepare"), **adapters}
        return {}

    def _call(self, spec: PipelineSpec, record: dict[str, Any], stage: str, progress: Progress) -> ArtifactRef | None:
        kind, _, method = stage.partition(":")
        if kind == "report":
            record["status"] = "succeeded"  # the report describes the finished run
            self.stages["report"](self.store, record, spec)
            return None
        kwargs = {"method": method} if method else {}
        return self.stages[kind](spec, self._inputs(record, stage), self.store, progress, **kwargs)  # type: ignore[no-any-return]

    def execute(self, run_id: str, listener: Callable[[ProgressEvent], None] | None = None) -> dict[str, Any]:
        """Run every unfinished stage of ``run_id`` in order; returns the final record."""
        record = self.runbook.load(run_id)
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return record
        spec = load_spec_text(record["spec_yaml"], f"run {run_id} spec", base_dir=record.get("base_dir"))
        progress = Progress(run_id)
        if listener is not None:
            progress.add_listener(listener)
        last_emit = [0.0]

        def forward(ev: ProgressEvent) -> None:
            now = time.monotonic()
            if ev.message or now - last_emit[0] > 0.5:  # progress events thinned to two a second
                last_emit[0] = now
                self.runbook.event(record, "progress", ev.stage, persist=bool(ev.message), description=ev.description,
                                   completed=ev.completed, total=ev.total, message=ev.message)

        progress.add_listener(forward)
        with self._lock:
            self._progress[run_id] = progress
        try:
            record["status"] = "running"
            self.runbook.event(record, "run_started")
            for stage, info in record["stages"].items():
                if info["state"] in ("succeeded", "cached"):
                    continue
                if record.get("cancel_requested") or progress.cancelled:
                    raise Cancelled("cancelled by the user")
                self._run_stage(spec, record, stage, progress.child(stage))
            self._finish(record, "succeeded", "")
        except Cancelled as exc:
            self._finish(record, "cancelled", str(exc))
        except SynthtuneError as exc:
            self._finish(record, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure ends the run with its message, logged in full
            log.exception("run %s failed", run_id)
            self._finish(record, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._progress.pop(run_id, None)
        return record

    def _run_stage(self, spec: PipelineSpec, record: dict[str, Any], stage: str, progress: Progress) -> None:
        info = record["stages"][stage]
        while True:
            info.update(state="running", attempts=info["attempts"] + 1, message="", started_at=time.time())
            self.runbook.event(record, "stage_started", stage)
            started = time.perf_counter()
            try:
                ref = self._call(spec, record, stage, progress)
            except RetryableError as exc:
                if info["attempts"] >= self.max_attempts:
                    info.update(state="failed", message=str(exc))
                    self.runbook.event(record, "stage_failed", stage, message=str(exc))
                    raise
                delay = max(exc.delay, self.backoff_s * 2 ** (info["attempts"] - 1))
                info.update(state="pending", message=f"retrying in {delay:.0f}s: {exc}")
                self.runbook.event(record, "stage_retry", stage, message=info["message"])
                if progress.cancelled:
                    raise Cancelled("cancelled by the user") from None
                time.sleep(delay)
                continue
            except Cancelled:
                info.update(state="cancelled", message="cancelled")
                raise
            except InvalidInput as exc:
                info.update(state="failed", message=str(exc))
                self.runbook.event(record, "stage_failed", stage, message=str(exc))
                raise
            except Exception as exc:
                info.update(state="failed", message=f"{type(exc).__name__}: {exc}")
                self.runbook.event(record, "stage_failed", stage, message=info["message"])
                raise
            info.update(state="succeeded", artifact=ref.to_dict() if ref else None, seconds=round(time.perf_counter() - started, 3))
            self.runbook.event(record, "stage_finished", stage, artifact=info["artifact"])
            return

    def _finish(self, record: dict[str, Any], status: str, error: str) -> None:
        record["status"] = status
        record["error"] = error or None
        if status == "succeeded":
            record["report"] = f"runs/{record['run_id']}/report.html" if "report" in record["stages"] else None
        self.runbook.event(record, "run_finished", message=error or status)

    def resume_unfinished(self) -> list[str]:
        """Run ids of every pending or running run in the store (to continue after a restart)."""
        return [r["run_id"] for r in self.runbook.list() if r.get("status") in ("pending", "running")]
