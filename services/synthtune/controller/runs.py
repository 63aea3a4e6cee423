"""Durable run records in the store (``runs/<run_id>/run.json``), written after every transition.

A record is a typed ``RunRecord``. The ``RunBook`` owns every change to one: stage threads
change a record only under ``RunBook.lock`` and save it through the book, which retries a
write that fails (a store hiccup is bookkeeping, never the run's failure).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from tenacity import Retrying, stop_after_attempt, stop_after_delay, wait_exponential

from synthtune.errors import NotFound, SynthtuneError
from synthtune.spec.dataflow import data_destinations
from synthtune.spec.graph import MethodOutcome, ReportInput, kind_of, method_of, stage_names
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import ArtifactRef, Store

log = logging.getLogger("synthtune.controller")
RunState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StageState = Literal["pending", "running", "succeeded", "failed", "cancelled", "cached", "skipped"]
ACTIVE = ("pending", "running")
FINAL = ("succeeded", "failed", "cancelled")
DONE = ("succeeded", "cached", "skipped")  # stage states that need no more work
MAX_EVENTS = 2000  # progress events are thinned; transitions are always kept


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def new_run_id(name: str) -> str:
    return f"{name[:40]}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StageRecord(_Record):
    state: StageState = "pending"
    artifact: dict[str, str] | None = None  # {kind, id, uri} of what it made
    attempts: int = 0  # attempts in this try of the run (a reopened run counts afresh)
    submissions: int = 0  # every start ever; names Jobs and operations, so never reset
    message: str = ""
    error_kind: str | None = None
    started_at: float | None = None
    seconds: float | None = None
    handle: dict[str, Any] | None = None  # a runner's facts while the stage runs (Job or operation name)

    def ref(self) -> ArtifactRef | None:
        return ArtifactRef(**self.artifact) if self.artifact else None


class RunRecord(_Record):
    run_id: str
    name: str
    status: RunState = "pending"
    spec_yaml: str
    base_dir: str | None = None
    store: str = ""
    until: str | None = None
    data_destinations: list[dict[str, Any]] = Field(default_factory=list)  # where record text goes (spec.dataflow)
    created_at: str = Field(default_factory=now)
    updated_at: str = Field(default_factory=now)
    error: str | None = None
    error_kind: str | None = None
    report: str | None = None  # store key of report.html once the run succeeded
    owner: str | None = None  # the controller or CLI executing it
    heartbeat: Annotated[float, BeforeValidator(lambda v: v or 0.0)] = 0.0  # time.time() of its last sign of life; 0: nobody executes it
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
    seq: int = 0

    def artifacts(self) -> dict[str, ArtifactRef | None]:
        """Stage name -> the artifact it made (None while it has made none)."""
        return {name: info.ref() for name, info in self.stages.items()}

    def report_input(self, status: str | None = None) -> ReportInput:
        """What the report step reads: the run's artifacts and why a method stopped (no record internals)."""
        art = {name: (info.artifact or {}).get("id") for name, info in self.stages.items()}
        methods: dict[str, MethodOutcome] = {}
        for name, info in self.stages.items():
            if not method_of(name):
                continue
            outcome = methods.setdefault(method_of(name), MethodOutcome())
            setattr(outcome, "synthetic" if kind_of(name) == "generate" else "adapter", art[name])
            if not outcome.stopped and info.state in ("skipped", "failed", "cancelled"):  # the first stage that stopped it
                outcome.stopped = f"{name}: {info.state}: {info.message}".rstrip(": ")
        return ReportInput(run_id=self.run_id, name=self.name, status=status or self.status, prepared=art.get("prepare"),
                           evaluation=art.get("evaluate"), methods=methods, data_destinations=self.data_destinations)


class RunBook:
    """Reads and writes run records; notifies watchers of every event.

    ``write_attempts``/``write_wait_s``/``write_patience_s``: a failed write of a record is retried
    with exponential backoff (doubling from ``write_wait_s``) until one of the limits is reached."""

    def __init__(self, store: Store, write_attempts: int = 8, write_wait_s: float = 0.5, write_patience_s: float = 60.0) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._watchers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._closed = False
        self._retrying = Retrying(stop=stop_after_attempt(write_attempts) | stop_after_delay(write_patience_s),
                                  wait=wait_exponential(multiplier=write_wait_s, max=10.0), reraise=True,
                                  before_sleep=lambda rs: log.warning("writing a run record failed (attempt %d, retried): %s",
                                                                      rs.attempt_number, rs.outcome.exception() if rs.outcome else ""))

    def close(self) -> None:
        """Write nothing more: another controller takes the runs over from what is in the store now."""
        with self._lock:
            self._closed = True

    @property
    def lock(self) -> threading.RLock:
        """Held while a record is changed or saved (stages of one run change it from several threads)."""
        return self._lock

    @contextmanager
    def changing(self, record: RunRecord) -> Iterator[RunRecord]:
        """Change ``record`` under the book's lock; it is saved when the block ends."""
        with self._lock:
            yield record
            self.save(record)

    def key(self, run_id: str) -> str:
        return f"runs/{run_id}/run.json"

    # A cancel request is its own small object, so a controller that does not execute the run
    # (a standby replica, a restarted pod) never races the executing one on run.json.
    def request_cancel(self, run_id: str) -> None:
        self.store.put_json(f"runs/{run_id}/cancel.json", {"run_id": run_id, "requested_at": now()})

    def cancel_requested(self, run_id: str) -> bool:
        return self.store.exists(f"runs/{run_id}/cancel.json")

    def clear_cancel(self, run_id: str) -> None:
        self.store.delete(f"runs/{run_id}/cancel.json")

    def create(self, spec: PipelineSpec, spec_yaml: str, until: str | None, run_id: str | None = None) -> RunRecord:
        run_id = run_id or new_run_id(spec.name)
        record = RunRecord(run_id=run_id, name=spec.name, spec_yaml=spec_yaml, base_dir=spec.base_dir, store=self.store.uri, until=until,
                           data_destinations=data_destinations(spec), stages={name: StageRecord() for name in stage_names(spec.method_keys(), until)})
        self.event(record, "run_created", message=f"run {run_id} created")
        return record

    def reopen(self, record: RunRecord) -> None:
        """Make a failed or cancelled run pending again; finished stages stay finished."""
        if record.status in ("failed", "cancelled"):
            with self.changing(record):
                record.status, record.error, record.error_kind = "pending", None, None
                for info in record.stages.values():
                    if info.state not in DONE:
                        info.state, info.attempts = "pending", 0
                self.clear_cancel(record.run_id)

    def load(self, run_id: str) -> RunRecord:
        try:
            return RunRecord.model_validate(self.store.get_json(self.key(run_id)))
        except NotFound:
            raise NotFound(f"no run {run_id!r} in {self.store.uri}") from None

    def save(self, record: RunRecord) -> None:
        """Write the record, retrying failed writes; raises only when the store stays away past the limits."""
        with self._lock:
            if self._closed:
                return
            record.updated_at = now()
            body = record.model_dump(mode="json")
            self._retrying(self.store.put_json, self.key(record.run_id), body)

    def list(self, skip: set[str] | frozenset[str] = frozenset()) -> list[RunRecord]:
        """Every run record, newest first; ``skip`` run ids are not read."""
        runs = []
        for key in self.store.list_keys("runs/"):
            if key.endswith("/run.json") and key.split("/")[1] not in skip:
                try:
                    runs.append(RunRecord.model_validate(self.store.get_json(key)))
                except (ValidationError, ValueError, OSError, SynthtuneError) as exc:  # a damaged or vanished record must not hide the others
                    log.warning("run record %s is unreadable (skipped): %s", key, exc)
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def event(self, record: RunRecord, kind: str, stage: str = "", persist: bool = True, **fields: Any) -> dict[str, Any]:
        """Append an event (and save the record unless ``persist`` is false); a write that still fails
        after the retries is logged, not raised: the record in memory is right and the next save carries it."""
        with self._lock:
            record.seq += 1
            ev = {"seq": record.seq, "type": kind, "stage": stage, "time": now(), "run_state": record.status, **fields}
            if stage and stage in record.stages:
                ev.setdefault("stage_state", record.stages[stage].state)
            record.events.append(ev)
            if len(record.events) > MAX_EVENTS:
                record.events = [e for e in record.events if e["type"] != "progress"][-MAX_EVENTS:]
            if persist:
                self.save_or_log(record, kind)
            watchers = list(self._watchers.get(record.run_id, []))
        for watcher in watchers:
            watcher(ev)
        return ev

    def save_or_log(self, record: RunRecord, why: str) -> None:
        """Save; a store that stays away is logged (the run goes on, the next save writes the record)."""
        try:
            self.save(record)
        except Exception as exc:  # noqa: BLE001 - bookkeeping never fails a run; the next save retries the whole record
            log.error("run %s: could not write its record (%s) after retries: %s", record.run_id, why, exc)

    def watch(self, run_id: str, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._lock:
            self._watchers.setdefault(run_id, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._watchers.get(run_id, []):
                    self._watchers[run_id].remove(callback)

        return unsubscribe
