"""At scale, through faults: the openai teacher on a loopback server, kills, resumes, bad keys."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from gen_fixtures import REPO_ROOT, excavator_records, make_prepared, pipeline, read_artifact
from loopback_server import LoopbackOpenAI
from teacher_script import script

from synthtune.errors import PermanentError, RetryableError
from synthtune.generator import run
from synthtune.llm.backends import TeacherUnavailable
from synthtune.progress import Progress

pytestmark = pytest.mark.integration


def problem_of(body) -> str:  # type: ignore[no-untyped-def]
    match = re.search(r"^Problem:\s*(.+)$", str(body["messages"][-1]["content"]), re.M)
    return match.group(1).strip() if match else ""


def teacher(server: LoopbackOpenAI, **extra):  # type: ignore[no-untyped-def]
    return {"backend": "openai", "model": "loopback", "base_url": server.base_url, "backoff_s": 0.01, "timeout_s": 5, **extra}


def test_kill_mid_run_then_resume_loses_nothing_and_reasks_nothing(shared_datasets, file_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 24)
    by_problem = {r["fields"]["problem"]: r["id"] for r in records}
    ref = make_prepared(file_store, records)
    with LoopbackOpenAI(script, latency=0.05) as server:
        gen = {"teacher": teacher(server, concurrency=2), "shard_size": 2}
        child = tmp_path / "child.py"
        child.write_text(
            "import sys\nfrom synthtune.spec import PipelineSpec\nfrom synthtune.store import open_store\n"
            "from synthtune.generator import run\n"
            f"spec = PipelineSpec.model_validate({{'version': 1, 'name': 'kill', 'source': {{'paths': ['x']}}, 'generate': {gen!r}}})\n"
            f"run(spec, {{'prepared': {ref.id!r}}}, open_store({str(file_store.backend.root)!r}))\n"
            "print('finished', flush=True)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "services")}
        proc = subprocess.Popen([sys.executable, str(child)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        work = file_store.backend.root / "work" / "generate"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(work.rglob("shard-*.jsonl"))) < 3:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        shards = sorted(work.rglob("shard-*.jsonl"))
        finished = {json.loads(line)["id"] for s in shards for line in s.read_text().splitlines()}
        assert 6 <= len(finished) < len(records), "the kill must land mid-run"
        first_run = Counter(by_problem[problem_of(b)] for b in server.requests)

        server.requests.clear()
        progress_events = []
        progress = Progress("generate", [progress_events.append])
        out = run(pipeline(**gen), {"prepared": ref}, file_store, progress=progress)
        second_run = Counter(by_problem[problem_of(b)] for b in server.requests)

    assert not finished & set(second_run), "a finished record was asked again"
    assert all(first_run[i] == 2 for i in finished)  # question + answer, once each
    rows, rejects, stats = read_artifact(file_store, out)
    assert {r["provenance"]["source_ids"][0] for r in rows} | {r["source_ids"][0] for r in rejects} == set(by_problem.values())
    assert stats["resumed_records"] == len(finished) and stats["input_records"] == 24
    assert any("ok" in e.message and "failed" in e.message for e in progress_events)
    assert progress_events[-1].completed == 24


def test_429_500_timeouts_and_garbage_are_retried_without_loss(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 8)
    ref = make_prepared(file_store, records)
    with LoopbackOpenAI(script) as server:
        server.faults = ["429:1", "500", "timeout:3", "garbage", "503", "no_choices"]
        spec = pipeline(teacher=teacher(server, timeout_s=1, concurrency=4, max_retries=3), filters={"dedup_near": False})
        started = time.monotonic()
        rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store))
        elapsed = time.monotonic() - started
    # 'no_choices' is a served reply without a completion: that record fails with a reason, the rest are generated
    assert len(rows) == 7 and [r["reason"] for r in rejects] == ["teacher_failed"]
    assert "no choices" in rejects[0]["detail"]
    assert elapsed >= 1.0  # Retry-After: 1 was honoured
    # 8 questions + 7 answers (the failed record asks none) + one retry per fault but the served 'no_choices'
    assert len(server.requests) == 8 + 7 + 5


def test_failures_over_the_limit_fail_retryably_then_resume(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 6)
    broken = {r["fields"]["problem"] for r in records[:4]}
    ref = make_prepared(file_store, records)
    with LoopbackOpenAI(script) as server:
        server.fault_for = lambda body: "500" if problem_of(body) in broken else None
        spec = pipeline(teacher=teacher(server, max_retries=1), max_failed_fraction=0.5)
        with pytest.raises(RetryableError, match=r"4 of 6 records failed.*run again to resume"):
            run(spec, {"prepared": ref}, file_store)
        served = len(server.served)
        server.fault_for = None
        rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store))
    assert len(rows) == 6 and not rejects and stats["resumed_records"] == 2
    assert served == 4  # the two good records, question and answer, asked once


def test_wrong_key_is_a_clear_permanent_error_and_keeps_nothing_secret(shared_datasets, file_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEACHER_KEY", "sk-wrong-0123456789")
    ref = make_prepared(file_store, excavator_records(shared_datasets, 3))
    with LoopbackOpenAI(script, api_key="sk-right") as server:
        spec = pipeline(teacher=teacher(server, api_key_env="TEACHER_KEY"))
        with pytest.raises(PermanentError) as err:
            run(spec, {"prepared": ref}, file_store)
        assert err.value.exit_code == 1
        assert "refused the API key (HTTP 401)" in str(err.value) and "TEACHER_KEY" in str(err.value)
        assert "sk-wrong" not in str(err.value)
        monkeypatch.setenv("TEACHER_KEY", "sk-right")
        rows, _, _ = read_artifact(file_store, run(spec, {"prepared": ref}, file_store))
    assert len(rows) == 3


def test_unreachable_teacher_exits_1_with_a_clear_message(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    from gen_port import free_port

    ref = make_prepared(file_store, excavator_records(shared_datasets, 2))
    spec = pipeline(teacher={"backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                             "max_retries": 1, "backoff_s": 0.01})
    with pytest.raises(TeacherUnavailable, match=r"unreachable after 1 retries.*run again to resume") as err:
        run(spec, {"prepared": ref}, file_store)
    assert err.value.exit_code == 1 and isinstance(err.value, RetryableError)


def test_empty_batch_is_reported_not_fatal(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    ref = make_prepared(file_store, excavator_records(shared_datasets, 4))
    with LoopbackOpenAI(lambda body: "") as server:
        notes = []
        out = run(pipeline(teacher=teacher(server)), {"prepared": ref}, file_store, progress=Progress("g", [notes.append]))
    rows, rejects, stats = read_artifact(file_store, out)
    assert not rows and stats["empty"] and {r["reason"] for r in rejects} == {"question_empty"} and len(rejects) == 4
    assert any("no example survived" in n.message for n in notes)


def test_a_kill_loses_only_the_requests_in_flight(shared_datasets, file_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Killed mid-run with the default grouping, every record the teacher had answered is saved but those in flight."""
    records = excavator_records(shared_datasets, 12)
    ref = make_prepared(file_store, records)
    with LoopbackOpenAI(script, latency=0.05) as server:
        gen = {"teacher": teacher(server, concurrency=2)}
        child = tmp_path / "child.py"
        child.write_text(
            "from synthtune.spec import PipelineSpec\nfrom synthtune.store import open_store\nfrom synthtune.generator import run\n"
            f"spec = PipelineSpec.model_validate({{'version': 1, 'name': 'kill', 'source': {{'paths': ['x']}}, 'generate': {gen!r}}})\n"
            f"run(spec, {{'prepared': {ref.id!r}}}, open_store({str(file_store.backend.root)!r}))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "services")}
        proc = subprocess.Popen([sys.executable, str(child)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(server.served) < 7:  # mid-run, not on a group boundary
            assert proc.poll() is None
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        answered = {problem_of(body) for body in list(server.served)}
    work = file_store.backend.root / "work" / "generate"
    saved = {json.loads(line)["id"] for s in work.rglob("shard-*.jsonl") for line in s.read_text().splitlines()}
    by_problem = {r["fields"]["problem"]: r["id"] for r in records}
    answered_ids = {by_problem[p] for p in answered if p in by_problem}
    assert len(answered_ids - saved) <= 2, f"answered but lost: {sorted(answered_ids - saved)}"  # concurrency 2 in flight


def test_campaign_teacher_faults_at_30_percent_every_record_generated_or_rejected(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    """Campaign: 30% of teacher requests fail (429 with every Retry-After form, 500, garbage, stalls past the timeout).

    Every record ends in data.jsonl or rejects.jsonl with a reason; nothing is lost or doubled. About 15 s.
    """
    import random

    records = excavator_records(shared_datasets, 16)
    ref = make_prepared(file_store, records)
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 1))
    faults = ["429:1", "429:120s", "429:nan", "429:-3", "429:" + soon, "429:Wed, 99 Foo 2020 25:61:61 GMT", "429ms:250",
              "429ms:-5000", "429ms:nan", "429", "500", "garbage", "timeout:2"]
    dice = random.Random(30)
    injected: Counter[str] = Counter()

    def fault_for(body):  # type: ignore[no-untyped-def]
        if dice.random() < 0.3:
            fault = dice.choice(faults)
            injected[fault] += 1
            return fault
        return None

    with LoopbackOpenAI(script) as server:
        server.fault_for = fault_for
        spec = pipeline(teacher=teacher(server, timeout_s=1, concurrency=8, max_retries=3), filters={"dedup_near": False},
                        max_failed_fraction=1.0)
        rows, rejects, _ = read_artifact(file_store, run(spec, {"prepared": ref}, file_store))
    assert sum(injected.values()) >= 8, injected
    generated = [source for r in rows for source in r["provenance"]["source_ids"]]
    rejected = [source for r in rejects for source in r["source_ids"]]
    assert sorted(generated + rejected) == sorted(r["id"] for r in records)  # each record once, generated or rejected
    assert all(r["reason"] for r in rejects)
    assert len(rows) >= 12  # three retries outlast most 30% fault runs


def test_progress_moves_within_a_shard_step_by_step(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    """One shard of four records, two teacher steps each (question, answer): the bar does not sit at 0/4
    until the shard ends; each step says so, and a record that fails early counts at once."""
    ref = make_prepared(file_store, excavator_records(shared_datasets, 4))
    with LoopbackOpenAI(script) as server:
        server.faults = ["no_choices"]  # the first question request is answered with no choice: that record fails at step 1
        events = []
        run(pipeline(teacher=teacher(server, concurrency=4), filters={"dedup_near": False}), {"prepared": ref}, file_store,
            progress=Progress("generate", [events.append]))
    step_notes = [e for e in events if "teacher step 1 answered" in (e.message or "")]
    assert len(step_notes) == 1 and "3 records still in progress" in step_notes[0].message
    assert step_notes[0].completed == 1  # the failed record, counted before the shard ended
    assert events[-1].completed == 4
