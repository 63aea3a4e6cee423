"""Durable run records in the store (``runs/<run_id>/run.json``), written after every transition."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from typing import Any

from synthtune.errors import NotFound
from synthtune.spec.dataflow import data_destinations
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Store

ACTIVE = ("pending", "running")
FINAL = ("succeeded", "failed", "cancelled")
DONE = ("succeeded", "cached", "skipped")  # stage states that need no more work
MAX_EVENTS = 2000  # progress events are thinned; transitions are always kept


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def stage_names(spec: PipelineSpec, until: str | None = None) -> list[str]:
    """The stage graph in execution order, cut after ``until`` (prepare, generate, train, evaluate)."""
    keys = spec.method_keys()
    order = [("prepare", ["prepare"]), ("generate", [f"generate:{k}" for k in keys]),
             ("train", [f"train:{k}" for k in keys]), ("evaluate", ["evaluate", "report"])]
    names: list[str] = []
    for group, members in order:
        names += members
        if until == group:
            break
    return names


def new_run_id(name: str) -> str:
    return f"{name[:40]}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class RunBook:
    """Reads and writes run records; notifies watchers of every event."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._watchers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._closed = False

    def close(self) -> None:
        """Write nothing more: another controller takes the runs over from what is in the store now."""
        with self._lock:
            self._closed = True

    @property
    def lock(self) -> threading.RLock:
        """Held while a record is changed or saved (stages of one run change it from several threads)."""
        return self._lock

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

    def create(self, spec: PipelineSpec, spec_yaml: str, until: str | None, run_id: str | None = None) -> dict[str, Any]:
        run_id = run_id or new_run_id(spec.name)
        record: dict[str, Any] = {
            "run_id": run_id, "name": spec.name, "status": "pending", "spec_yaml": spec_yaml, "base_dir": spec.base_dir,
            "store": self.store.uri, "data_destinations": data_destinations(spec), "until": until, "created_at": now(), "updated_at": now(), "error": None,
            "stages": {name: {"state": "pending", "artifact": None, "attempts": 0, "message": ""} for name in stage_names(spec, until)},
            "events": [], "seq": 0,
        }
        self.event(record, "run_created", message=f"run {run_id} created")
        return record

    def reopen(self, record: dict[str, Any]) -> None:
        """Make a failed or cancelled run pending again; finished stages stay finished."""
        if record["status"] in ("failed", "cancelled"):
            record.update(status="pending", error=None, error_kind=None)
            for info in record["stages"].values():
                if info["state"] not in DONE:
                    info.update(state="pending", attempts=0)
            self.clear_cancel(record["run_id"])
            self.save(record)

    def load(self, run_id: str) -> dict[str, Any]:
        try:
            return dict(self.store.get_json(self.key(run_id)))
        except NotFound:
            raise NotFound(f"no run {run_id!r} in {self.store.uri}") from None

    def save(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            record["updated_at"] = now()
            self.store.put_json(self.key(record["run_id"]), record)

    def list(self, skip: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """Every run record, newest first; ``skip`` run ids are not read."""
        runs = []
        for key in self.store.list_keys("runs/"):
            if key.endswith("/run.json") and key.split("/")[1] not in skip:
                try:
                    runs.append(self.store.get_json(key))
                except Exception:  # noqa: BLE001 - a damaged record must not hide the others
                    continue
        return sorted(runs, key=lambda r: r.get("created_at", ""), reverse=True)

    def event(self, record: dict[str, Any], kind: str, stage: str = "", persist: bool = True, **fields: Any) -> dict[str, Any]:
        with self._lock:
            record["seq"] = int(record.get("seq", 0)) + 1
            ev = {"seq": record["seq"], "type": kind, "stage": stage, "time": now(), "run_state": record["status"], **fields}
            if stage and stage in record["stages"]:
                ev.setdefault("stage_state", record["stages"][stage]["state"])
            record["events"].append(ev)
            if len(record["events"]) > MAX_EVENTS:
                record["events"] = [e for e in record["events"] if e["type"] != "progress"][-MAX_EVENTS:]
            if persist:
                self.save(record)
            watchers = list(self._watchers.get(record["run_id"], []))
        for watcher in watchers:
            watcher(ev)
        return ev

    def watch(self, run_id: str, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._lock:
            self._watchers.setdefault(run_id, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._watchers.get(run_id, []):
                    self._watchers[run_id].remove(callback)

        return unsubscribe
