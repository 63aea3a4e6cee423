"""The stage graph: parallel independent stages, cached and skipped stages, failures and cancels across replicas."""

from __future__ import annotations

import threading
import time

import pytest

from synthtune.controller import Executor, RunBook
from synthtune.controller.config import ControllerConfig
from synthtune.spec import load_spec_text
from synthtune.spec.graph import dependencies

from .fakes import SPEC, calls, intervals, make_stages


def _executor(store, count, parallel=1, **kw):
    config = ControllerConfig(max_parallel_stages=parallel, poll_s=0.05)
    return Executor(store, RunBook(store), make_stages(count, **kw), backoff_s=0.01, config=config)


def _submit(book):
    return book.create(load_spec_text(SPEC), SPEC, None).run_id


def test_dependencies_follow_the_data():
    names = ["prepare", "generate:a", "generate:b", "train:a", "train:b", "evaluate", "report"]
    assert dependencies("generate:b", names) == ["prepare"]
    assert dependencies("train:a", names) == ["prepare", "generate:a"]  # it reads the prepared data too
    assert dependencies("evaluate", names) == ["prepare", "train:a", "train:b"]
    assert dependencies("report", names) == ["evaluate"]
    assert dependencies("prepare", names) == []


def test_independent_methods_run_in_parallel(tmp_path, file_store):
    count = tmp_path / "calls.txt"
    ex = _executor(file_store, count, parallel=2, sleep_s=0.4)
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "succeeded"
    spans = intervals(count)
    gen_a, gen_b = spans["generate:record_qa"], spans["generate:persona"]
    assert gen_a[0] < gen_b[1] and gen_b[0] < gen_a[1], "the two generate stages should overlap"
    # ...but never before what they read from was done.
    assert min(gen_a[0], gen_b[0]) >= spans["prepare"][1]
    assert spans["train:record_qa"][0] >= gen_a[1] and spans["train:persona"][0] >= gen_b[1]
    assert spans["evaluate"][0] >= max(spans["train:record_qa"][1], spans["train:persona"][1])


def test_sequential_by_default(tmp_path, file_store):
    count = tmp_path / "calls.txt"
    ex = _executor(file_store, count, sleep_s=0.1)
    assert ex.execute(_submit(ex.runbook)).status == "succeeded"
    spans = sorted(intervals(count).values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_second_identical_run_is_fully_cached(tmp_path, file_store):
    count = tmp_path / "calls.txt"
    ex = _executor(file_store, count)
    first = ex.execute(_submit(ex.runbook))
    ran = calls(count)
    second = ex.execute(_submit(ex.runbook))
    assert second.status == "succeeded"
    states = {name: info.state for name, info in second.stages.items()}
    assert all(state == "cached" for name, state in states.items() if name != "report"), states
    assert calls(count)[len(ran):] == ["report"]  # only the report is written again
    assert all(info.state == "succeeded" for info in first.stages.values())
    assert any(ev["type"] == "stage_finished" and ev.get("message") == "reused from the cache" for ev in second.events)


def test_a_skipped_method_does_not_stop_the_others(tmp_path, file_store):
    count = tmp_path / "calls.txt"
    seen = {}
    stages = make_stages(count, fail={"train:persona": "skip"})
    evaluate = stages["evaluate"]

    def watching_evaluate(spec, inputs, store, progress):
        seen.update(inputs)
        return evaluate(spec, inputs, store, progress)

    stages["evaluate"] = watching_evaluate
    ex = Executor(file_store, RunBook(file_store), stages, config=ControllerConfig(poll_s=0.05))
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "succeeded"
    assert record.stages["train:persona"].state == "skipped"
    assert "no usable examples" in record.stages["train:persona"].message
    assert set(seen) == {"prepared", "adapter:record_qa"}


def test_a_permanent_failure_fails_the_run_and_stops_its_siblings(tmp_path, file_store):
    count = tmp_path / "calls.txt"
    ex = _executor(file_store, count, parallel=2, sleep_s=0.5, fail={"generate:record_qa": "permanent"})
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "failed" and record.error_kind == "invalid_input"
    assert "records.csv:7: column 'Action' is empty" in record.error
    assert record.stages["generate:record_qa"].state == "failed"
    assert record.stages["generate:persona"].state in ("cancelled", "succeeded")
    assert "train:record_qa" not in calls(count) and "evaluate" not in calls(count)


def test_cancel_requested_by_another_replica_stops_the_run(tmp_path, file_store):
    count = tmp_path / "calls.txt"
    ex = _executor(file_store, count, sleep_s=5.0)
    run_id = _submit(ex.runbook)
    result = {}
    worker = threading.Thread(target=lambda: result.update(record=ex.execute(run_id)))
    worker.start()
    deadline = time.time() + 10
    while time.time() < deadline and "prepare" not in calls(count):
        time.sleep(0.02)
    other = Executor(file_store, RunBook(file_store), make_stages(count))  # a standby: it does not execute the run
    assert other.cancel(run_id).status == "running"  # only asked; the executing replica stops it
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert result["record"].status == "cancelled" and result["record"].stages["prepare"].state == "cancelled"
    ex.runbook.reopen(ex.runbook.load(run_id))
    assert not ex.runbook.cancel_requested(run_id)  # reopening clears the old request


def test_a_pending_run_is_cancelled_as_it_starts(file_store, tmp_path):
    ex = _executor(file_store, tmp_path / "calls.txt")
    run_id = _submit(ex.runbook)
    assert ex.cancel(run_id).status == "pending"  # only the request is written: no second writer of run.json
    assert ex.execute(run_id).status == "cancelled"
    assert calls(tmp_path / "calls.txt") == []


@pytest.mark.parametrize("kind, attempts", [("retry-once", 2)])
def test_retry_counts_attempts(tmp_path, file_store, kind, attempts):
    count = tmp_path / "calls.txt"
    ex = _executor(file_store, count, fail={"train:persona": kind})
    record = ex.execute(_submit(ex.runbook))
    assert record.status == "succeeded"
    assert record.stages["train:persona"].attempts == attempts
    assert any(ev["type"] == "stage_retry" and ev["stage"] == "train:persona" for ev in record.events)


def test_a_controller_shutting_down_leaves_its_runs_to_the_next_one(tmp_path, file_store):
    count = tmp_path / "calls.txt"
    ex = _executor(file_store, count, sleep_s=0.5)
    run_id = _submit(ex.runbook)
    worker = threading.Thread(target=ex.execute, args=(run_id,))
    worker.start()
    deadline = time.time() + 10
    while time.time() < deadline and "generate:record_qa" not in calls(count):
        time.sleep(0.02)
    ex.shutdown()
    worker.join(timeout=5)
    assert not worker.is_alive()
    time.sleep(0.6)  # the stage thread finishes: it must not write the record any more
    left = RunBook(file_store).load(run_id)
    assert left.status == "running" and left.stages["generate:record_qa"].state == "running"
    successor = _executor(file_store, count)
    done = successor.execute(run_id)
    assert done.status == "succeeded"
    assert calls(count).count("prepare") == 1  # finished before the shutdown: not redone


def test_submissions_keep_counting_when_a_failed_run_is_reopened(tmp_path, file_store):
    """Job and operation names come from the submission number: a reopened run must not reuse the failed Job's."""
    from synthtune.controller.runner import InProcessRunner
    from synthtune.errors import InvalidInput

    seen = []
    stages = make_stages(tmp_path / "calls.txt")

    class Recording(InProcessRunner):
        def run(self, task, store, progress):
            seen.append((task.stage, task.attempt))
            if task.stage == "prepare" and len(seen) == 1:
                raise InvalidInput("records.csv:3: column 'Action' is empty")
            return super().run(task, store, progress)

    ex = Executor(file_store, RunBook(file_store), stages, config=ControllerConfig(poll_s=0.05),
                  runners={"inprocess": Recording(stages)})
    run_id = _submit(ex.runbook)
    assert ex.execute(run_id).status == "failed"
    record = ex.runbook.load(run_id)
    ex.runbook.reopen(record)
    assert ex.execute(run_id).status == "succeeded"
    assert seen[:2] == [("prepare", 1), ("prepare", 2)]
    assert ex.runbook.load(run_id).stages["prepare"].attempts == 1  # retries count afresh after a reopen
