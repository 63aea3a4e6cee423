"""The controller's executor: stage order, caching, retries, permanent failures, cancel, resume."""

from __future__ import annotations

import threading
import time

import pytest

from synthtune.controller import Executor, RunBook
from synthtune.errors import NotFound
from synthtune.spec import load_spec_text
from synthtune.spec.graph import stage_names

from .fakes import SPEC, calls, make_stages


@pytest.fixture
def setup(tmp_path, file_store):
    count = tmp_path / "calls.txt"

    def make(**kw):
        book = RunBook(file_store)
        ex = Executor(file_store, book, make_stages(count, **kw), backoff_s=0.01)
        return ex, book

    return make, count, file_store


def _submit(book, until=None):
    spec = load_spec_text(SPEC)
    return book.create(spec, SPEC, until).run_id


def test_stage_graph_order_and_until():
    spec = load_spec_text(SPEC)
    assert stage_names(spec.method_keys()) == ["prepare", "generate:record_qa", "generate:persona", "train:record_qa", "train:persona", "evaluate", "report"]
    assert stage_names(spec.method_keys(), "generate") == ["prepare", "generate:record_qa", "generate:persona"]


def test_run_executes_every_stage_once_and_records_artifacts(setup):
    make, count, store = setup
    ex, book = make()
    record = ex.execute(_submit(book))
    assert record.status == "succeeded"
    assert calls(count) == ["prepare", "generate:record_qa", "generate:persona", "train:record_qa", "train:persona", "evaluate", "report"]
    assert record.stages["train:persona"].artifact["kind"] == "adapter"
    saved = store.get_json(f"runs/{record.run_id}/run.json")
    assert saved["status"] == "succeeded"
    types = [e["type"] for e in saved["events"]]
    assert types[0] == "run_created" and types[-1] == "run_finished" and types.count("stage_finished") == 7


def test_second_identical_run_is_fully_cached(setup):
    make, count, _ = setup
    ex, book = make()
    first = ex.execute(_submit(book))
    n = len(calls(count))
    second = ex.execute(_submit(book))
    assert calls(count)[n:] == ["report"]  # only the new run's report is written
    for name in first.stages:
        assert first.stages[name].artifact == second.stages[name].artifact


def test_retryable_failure_is_retried(setup):
    make, count, _ = setup
    ex, book = make(fail={"generate:persona": "retry-once"})
    record = ex.execute(_submit(book))
    assert record.status == "succeeded"
    assert record.stages["generate:persona"].attempts == 2
    assert any(e["type"] == "stage_retry" for e in record.events)


def test_permanent_failure_fails_the_run_with_the_stage_message(setup):
    make, count, _ = setup
    ex, book = make(fail={"train:record_qa": "permanent"})
    record = ex.execute(_submit(book))
    assert record.status == "failed"
    assert "records.csv:7: column 'Action' is empty" in record.error
    assert record.stages["train:record_qa"].state == "failed"
    assert record.stages["train:record_qa"].attempts == 1
    assert "evaluate" not in calls(count)


def test_cancel_stops_a_running_run(setup):
    make, count, _ = setup
    ex, book = make(sleep_s=0.3)
    run_id = _submit(book)
    thread = threading.Thread(target=ex.execute, args=(run_id,))
    thread.start()
    time.sleep(0.5)
    ex.cancel(run_id)
    thread.join(timeout=10)
    record = book.load(run_id)
    assert record.status == "cancelled"
    assert "report" not in calls(count)


def test_unknown_run_is_not_found(setup):
    make, _, _ = setup
    ex, book = make()
    with pytest.raises(NotFound, match="no run 'nope'"):
        book.load("nope")


def test_until_stops_after_the_stage(setup):
    make, count, _ = setup
    ex, book = make()
    record = ex.execute(_submit(book, until="generate"))
    assert record.status == "succeeded"
    assert calls(count) == ["prepare", "generate:record_qa", "generate:persona"]


class FlakyRecordWrites:
    """Fails the next writes of run.json that carry a given event (a store hiccup), then lets them through."""

    def __init__(self, store, event: str, stage: str = "", failures: int = 2) -> None:  # type: ignore[no-untyped-def]
        self.put_json, self.event, self.stage, self.left, self.failed = store.put_json, event, stage, failures, 0
        store.put_json = self

    def __call__(self, key, body, *args, **kwargs):  # type: ignore[no-untyped-def]
        last = (body.get("events") or [{}])[-1] if key.endswith("/run.json") else {}
        if self.left and last.get("type") == self.event and last.get("stage", "") == self.stage:
            self.left -= 1
            self.failed += 1
            raise ConnectionError("S3 endpoint reset the connection")
        return self.put_json(key, body, *args, **kwargs)


@pytest.mark.parametrize(("event", "stage", "failures"), [
    ("stage_finished", "prepare", 2),  # the write right after a stage succeeded
    ("run_finished", "", 3),  # the write that ends the run
    ("stage_started", "train:persona", 1),
])
def test_a_failed_run_record_write_is_retried_and_never_fails_the_run(setup, event, stage, failures):
    _, count, store = setup
    book = RunBook(store, write_wait_s=0.001)  # the backoff kept short here
    ex = Executor(store, book, make_stages(count), backoff_s=0.01)
    run_id = _submit(book)
    flaky = FlakyRecordWrites(store, event, stage, failures)
    record = ex.execute(run_id)
    assert flaky.failed == failures
    saved = store.get_json(f"runs/{run_id}/run.json")
    assert (record.status, saved["status"]) == ("succeeded", "succeeded"), saved["error"]
    assert all(info["state"] == "succeeded" for info in saved["stages"].values())
    assert calls(count).count("prepare") == 1  # nothing was redone


def test_a_store_that_stays_away_leaves_the_record_in_memory_right(setup, caplog):
    _, count, store = setup
    book = RunBook(store, write_wait_s=0.001)
    ex = Executor(store, book, make_stages(count), backoff_s=0.01)
    run_id = _submit(book)
    flaky = FlakyRecordWrites(store, "stage_finished", "generate:persona", failures=100)
    record = ex.execute(run_id)
    assert record.status == "succeeded" and flaky.failed == 8  # every attempt of that one write, then the run went on
    assert store.get_json(f"runs/{run_id}/run.json")["stages"]["generate:persona"]["state"] == "succeeded"  # the next save carried it
    assert "could not write its record (stage_finished) after retries" in caplog.text


def test_a_record_written_before_the_typed_record_still_loads(setup):
    _, _, store = setup
    store.put_json("runs/old-1/run.json", {"run_id": "old-1", "name": "old", "status": "failed", "spec_yaml": SPEC, "heartbeat": None,
                                           "stages": {"prepare": {"state": "succeeded", "artifact": None, "attempts": 1, "message": ""}},
                                           "events": [], "seq": 0, "some_field_of_the_past": 1})
    record = RunBook(store).load("old-1")
    assert (record.status, record.heartbeat, record.stages["prepare"].state, record.stages["prepare"].submissions) == ("failed", 0.0, "succeeded", 0)


def test_stage_retries_back_off_with_jitter(tmp_path, file_store, monkeypatch):
    """Two stages that fail at the same moment do not retry in lockstep: each wait is the backoff plus a random share of it."""
    from synthtune.progress import Progress

    waits: list[float] = []
    real_wait = Progress.wait_cancelled

    def recording_wait(self, seconds):  # type: ignore[no-untyped-def]
        waits.append(seconds)
        return real_wait(self, seconds)

    monkeypatch.setattr(Progress, "wait_cancelled", recording_wait)
    count = tmp_path / "calls.txt"
    book = RunBook(file_store)
    stages = make_stages(count, fail={"generate:record_qa": "retry-once", "generate:persona": "retry-once"})
    record = Executor(file_store, book, stages, backoff_s=0.05).execute(_submit(book))
    assert record.status == "succeeded"
    assert len(waits) == 2, waits
    assert all(0.05 <= w <= 0.1 for w in waits), waits  # the first backoff, plus up to one more of it
    assert waits[0] != waits[1], waits
