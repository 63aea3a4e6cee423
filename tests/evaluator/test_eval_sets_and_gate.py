"""evaluate.sets (XLSX and chat JSONL), the promotion gate and determinism, with answers from a double (FakeAnswers)."""

from __future__ import annotations

import json

import openpyxl
import pytest
from eval_fixtures import (
    FakeAnswers,
    RecordingProgress,
    make_adapter,
    make_prepared,
    pipeline,
    read_evaluation,
    user_text,
)

from synthtune.errors import InvalidInput
from synthtune.records import question_for_record, reference_for_record
from synthtune.spec import PipelineSpec


def _tickets(shared_datasets, n):  # type: ignore[no-untyped-def]
    import csv

    out, seen = [], set()
    with open(shared_datasets / "excavator_work_orders_labelled.csv", encoding="utf-8") as f:
        for row_no, row in enumerate(csv.DictReader(f), 2):
            text = row["OriginalShorttext"].strip()
            if row["Action"] and text.lower() not in seen:
                seen.add(text.lower())
                out.append({"id": f"excavator.csv:{row_no}", "type": "record", "text": "", "source": {"file": "excavator.csv", "row": row_no},
                            "fields": {"problem": text, "machine": row["Asset"], "solution": row["Action"]}})
    return out[:n]


def _xlsx(path, header, rows, sheet="Exam"):  # type: ignore[no-untyped-def]
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    ws.append(header)
    for row in rows:
        ws.append(row)
    book.save(path)
    return path


def _inputs(store, train, test, methods):  # type: ignore[no-untyped-def]
    return {"prepared": make_prepared(store, test, train), **{f"adapter:{m}": make_adapter(store, "smollm2-135m-instruct") for m in methods}}


def _with(spec: PipelineSpec, **evaluate):  # type: ignore[no-untyped-def]
    return PipelineSpec.model_validate({**spec.model_dump(), "evaluate": {**spec.evaluate.model_dump(), **evaluate}})


def test_an_xlsx_set_is_scored_for_base_and_both_tuned_models(shared_datasets, file_store, monkeypatch, tmp_path):
    from synthtune.evaluator import answers, run

    tickets = _tickets(shared_datasets, 40)
    train, test, exam = tickets[:20], tickets[20:30], tickets[30:40]
    path = _xlsx(tmp_path / "exam.xlsx", ["Question", "Answer"], [[question_for_record(t), reference_for_record(t)] for t in exam])
    truth = {question_for_record(t): reference_for_record(t) for t in tickets}

    def reply(model, messages, t, s):  # type: ignore[no-untyped-def]
        ref = truth[user_text(messages)]
        return {"base": "Check it.", "tuned:direct": ref, "tuned:record_qa": ref + " Then test the machine under load for an hour."}[model]

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(reply))
    spec = _with(pipeline(methods=[{"name": "direct"}, {"name": "record_qa"}], metrics=["rouge", "bleu"], forgetting_probe=False),
                 sets=[{"name": "exam", "path": str(path), "fields": {"question": "Question", "reference": "Answer"}, "sheet": "Exam"}],
                 gate={"metric": "rougeL", "set": "exam", "min_gain": 0.1})
    metrics, preds = read_evaluation(file_store, run(spec, _inputs(file_store, train, test, ["direct", "record_qa"]), file_store, RecordingProgress()))
    exam_set = metrics["sets"]["exam"]
    assert exam_set["n"] == 10 and set(exam_set["metrics"]) == {"base", "tuned:direct", "tuned:record_qa"}
    assert set(exam_set["metrics"]["base"]) >= {"rouge1", "rouge2", "rougeL", "bleu", "n", "loop_rate"}  # the same keys as `metrics`
    assert exam_set["metrics"]["tuned:direct"]["rougeL"] == 1.0 > exam_set["metrics"]["tuned:record_qa"]["rougeL"] > exam_set["metrics"]["base"]["rougeL"]
    assert [r["method"] for r in exam_set["leaderboard"]] == ["direct", "record_qa"]
    assert metrics["gate"]["passed"] and metrics["gate"]["set"] == "exam" and metrics["gate"]["model"] == "tuned:direct"
    assert metrics["gate"]["ci_low"] > 0.1 and metrics["gate"]["min_gain"] == 0.1
    assert sum(p.get("set") == "exam" for p in preds) == 30 and metrics["test_records"] == 10  # the set is not mixed into the test split


def test_a_chat_jsonl_set_scores_function_calls(file_store, monkeypatch, tmp_path, shared_datasets):
    from synthtune.evaluator import answers, run

    lines = [{"messages": [{"role": "user", "content": f"Conveyor {i} jammed at the infeed. What now?"}],
              "expected_call": {"name": "STOP_CONVEYOR", "arguments": {"target": f"conveyor {i}"}}} for i in range(4)]
    lines.append({"messages": [{"role": "user", "content": "How do I reset the capper?"}], "reference": "Press reset and check the chuck."})
    path = tmp_path / "ops.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    def reply(model, messages, t, s):  # type: ignore[no-untyped-def]
        text = user_text(messages)
        if "Conveyor" not in text:
            return "Press reset."
        target = text.split(" jammed")[0].lower()
        if model == "base":
            return "Stop everything."
        return json.dumps({"name": "STOP_CONVEYOR", "arguments": {"target": target}})

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(reply))
    spec = _with(pipeline(metrics=["rouge", "function_call"], forgetting_probe=False), sets=[{"name": "ops", "path": str(path)}])
    tickets = _tickets(shared_datasets, 6)
    metrics, _ = read_evaluation(file_store, run(spec, _inputs(file_store, tickets[:3], tickets[3:], ["record_qa"]), file_store, RecordingProgress()))
    ops = metrics["sets"]["ops"]
    assert ops["n"] == 5 and ops["metrics"]["base"]["n"] == 1  # items; the reference-scored one, the calls counted apart
    assert ops["metrics"]["tuned:record_qa"]["function_args_accuracy"] == 1.0 and ops["metrics"]["base"]["function_name_accuracy"] == 0.0
    assert ops["metrics"]["base"]["function_calls"] == 4 and ops["leaderboard"][0]["metric"] == "rougeL"


def test_gate_that_cannot_pass_fails_with_its_reason(file_store, monkeypatch, shared_datasets):
    from synthtune.evaluator import answers, run

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(lambda model, messages, t, s: "Replace."))
    tickets = _tickets(shared_datasets, 12)
    spec = _with(pipeline(metrics=["rouge"], forgetting_probe=False), gate={"metric": "rougeL", "min_gain": 0.05})
    metrics, _ = read_evaluation(file_store, run(spec, _inputs(file_store, tickets[:6], tickets[6:], ["record_qa"]), file_store, RecordingProgress()))
    gate = metrics["gate"]
    assert gate["passed"] is False and gate["gain"] == 0.0 and gate["ci_low"] == 0.0 and gate["set"] == "test"
    assert "tuned:record_qa rougeL gain +0.000" in gate["reason"] and "needs gain >= 0.05" in gate["reason"]


def test_determinism_is_the_share_of_prompts_whose_samples_agree(file_store, monkeypatch, shared_datasets):
    from synthtune.evaluator import answers, run

    tickets = _tickets(shared_datasets, 8)
    wobbly = {question_for_record(t) for t in tickets[4:6]}  # base disagrees with itself on 2 of 4 prompts

    def reply(model, messages, t, s):  # type: ignore[no-untyped-def]
        if model == "base" and user_text(messages) in wobbly:
            return f"Replace part {s}."
        return "Replace  the PART." if s % 2 else "replace the part"  # the same once normalised

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(reply))
    spec = _with(pipeline(metrics=["rouge"], forgetting_probe=False), temperatures=[0, 0.8], samples=3)
    metrics, _ = read_evaluation(file_store, run(spec, _inputs(file_store, tickets[:4], tickets[4:], ["direct"]), file_store, RecordingProgress()))
    assert metrics["determinism"] == {"base": 0.5, "tuned:direct": 1.0} and metrics["determinism_temperature"] == 0.8


@pytest.mark.parametrize("case", ["missing_column", "empty", "bad_json", "inside_training", "no_sheet"])
def test_bad_sets_are_errors_naming_file_and_what_is_wrong(case, file_store, monkeypatch, tmp_path, shared_datasets):
    from synthtune.evaluator import answers, run

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(lambda *a: "x"))
    tickets = _tickets(shared_datasets, 12)
    entry = {"name": "exam", "path": str(tmp_path / "exam.xlsx"), "fields": {"question": "Question", "reference": "Answer"}}
    if case == "missing_column":
        _xlsx(tmp_path / "exam.xlsx", ["Question", "Expected"], [["a?", "b"]])
        want = f"{tmp_path / 'exam.xlsx'}: no column 'Answer'"
    elif case == "empty":
        _xlsx(tmp_path / "exam.xlsx", ["Question", "Answer"], [])
        want = "has no items"
    elif case == "no_sheet":
        _xlsx(tmp_path / "exam.xlsx", ["Question", "Answer"], [["a?", "b"]])
        entry["sheet"] = "Final"
        want = "no sheet 'Final' (sheets: Exam)"
    elif case == "bad_json":
        (tmp_path / "exam.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}], "reference": "ok"}\n{"messages": [\n')
        entry = {"name": "exam", "path": str(tmp_path / "exam.jsonl")}
        want = f"{tmp_path / 'exam.jsonl'}:2: not valid JSON"
    else:
        _xlsx(tmp_path / "exam.xlsx", ["Question", "Answer"], [[question_for_record(t), reference_for_record(t)] for t in tickets[:6]])
        want = "all 6 items are inside the training data"
    spec = _with(pipeline(metrics=["rouge"], forgetting_probe=False), sets=[entry])
    with pytest.raises(InvalidInput) as err:
        run(spec, _inputs(file_store, tickets[:6], tickets[6:], ["direct"]), file_store, RecordingProgress())
    assert want in str(err.value)


def test_a_gate_on_an_unknown_set_is_a_spec_error():
    with pytest.raises(Exception, match="gate.set 'exam' is neither 'test' nor a set"):
        pipeline(gate={"metric": "rougeL", "set": "exam"})


def test_short_training_problems_inside_an_exam_question_do_not_make_it_training_data():
    """Found by the CLI run on the excavator orders: two-word problems ("bucket teeth") with "Replace" matched every exam item."""
    from synthtune.evaluator.stage import check_not_in_training
    from synthtune.records import EvalItem

    train = [{"id": f"t:{i}", "type": "record", "fields": {"problem": p, "solution": "Replace"}} for i, p in enumerate(["bucket teeth", "lip", "boom hose"])]
    exam = [EvalItem(f"exam:{i}", "reference", "s", q, "Fix: Replace.") for i, q in
            enumerate(["The bucket teeth on excavator A are worn: what do I do?", "Boom hose burst on B: what now?"])]
    assert check_not_in_training("exam", exam, train) == 0


def _upload(path, store_uri: str) -> str:  # type: ignore[no-untyped-def]
    """`synthtune upload FILE --store URI --prefix sets`, as a user runs it; the printed URI."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    services = Path(__file__).resolve().parents[2] / "services"
    out = subprocess.run([sys.executable, "-m", "synthtune.cli.main", "upload", str(path), "--store", store_uri, "--prefix", "sets"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(services)), timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.integration
def test_an_s3_set_uploaded_with_synthtune_upload_is_read_from_the_store(s3_store_uri, file_store, monkeypatch, tmp_path, shared_datasets):
    """moto's S3 server on loopback holds the exam; the evaluator and the training-data decontamination read it from there."""
    import csv

    from synthtune.evalsets import decontamination_records
    from synthtune.evaluator import answers, run

    tickets = _tickets(shared_datasets, 20)
    train, test, exam = tickets[:8], tickets[8:14], tickets[14:20]
    local = tmp_path / "exam.csv"
    with local.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["Question", "Answer"], *[[question_for_record(t), reference_for_record(t)] for t in exam]])
    uri = _upload(local, s3_store_uri)
    assert uri == f"{s3_store_uri}/sets/exam.csv"
    local.unlink()  # read from S3, not from this folder

    truth = {question_for_record(t): reference_for_record(t) for t in tickets}
    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(lambda model, messages, t, s: truth[user_text(messages)] if model != "base" else "Check it."))
    spec = _with(pipeline(metrics=["rouge"], forgetting_probe=False), sets=[{"name": "exam", "path": uri, "fields": {"question": "Question", "reference": "Answer"}}])
    metrics, preds = read_evaluation(file_store, run(spec, _inputs(file_store, train, test, ["direct"]), file_store, RecordingProgress()))
    assert metrics["sets"]["exam"]["n"] == 6 and metrics["sets"]["exam"]["metrics"]["tuned:direct"]["rougeL"] == 1.0
    assert sorted(p["prompt"] for p in preds if p.get("set") == "exam" and p["model"] == "base") == sorted(question_for_record(t) for t in exam)
    assert [r["fields"]["solution"] for r in decontamination_records(spec)] == [reference_for_record(t) for t in exam]


@pytest.mark.integration
@pytest.mark.parametrize("suffix", ["sets/none.csv", "sets/*.csv", "nothing-here.jsonl"])
def test_a_missing_or_folder_s3_set_is_bad_input_naming_the_uri(suffix, s3_store_uri, file_store, monkeypatch, tmp_path, shared_datasets):
    from synthtune.evaluator import answers, run

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(lambda *a: "x"))
    tickets = _tickets(shared_datasets, 8)
    (tmp_path / "a.csv").write_text("Question,Answer\nq?,a\n")
    (tmp_path / "b.csv").write_text("Question,Answer\nq2?,a2\n")
    for name in ("a.csv", "b.csv"):
        _upload(tmp_path / name, s3_store_uri)
    uri = f"{s3_store_uri}/{suffix}"
    spec = _with(pipeline(metrics=["rouge"], forgetting_probe=False), sets=[{"name": "exam", "path": uri, "fields": {"question": "Question", "reference": "Answer"}}])
    with pytest.raises(InvalidInput) as err:
        run(spec, _inputs(file_store, tickets[:4], tickets[4:], ["direct"]), file_store, RecordingProgress())
    want = "names 2 objects; a set is one file" if "*" in suffix else "does not exist"
    assert f"evaluate.sets[exam]: {uri!r}" in str(err.value) and want in str(err.value)
