"""Quality filters: decontamination, length, refusals, greetings, dedup, judge, broken replies."""

from __future__ import annotations

from gen_fixtures import excavator_records, fmea_records, make_prepared, pipeline, read_artifact
from teacher_script import ScriptedBackend, script

from synthtune.generator import run
from synthtune.generator.text import clean_reply


def _problem(body):  # type: ignore[no-untyped-def]
    import re

    match = re.search(r"^Problem:\s*(.+)$", str(body["messages"][-1]["content"]), re.M)
    return match.group(1).strip() if match else ""


def test_planted_test_questions_are_removed_by_decontamination(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 40)
    train, test = records[:12], [r for r in records[12:] if len(r["fields"]["problem"].split()) >= 4][:6]
    fmea = fmea_records(shared_datasets, 30)
    long_test = next(r for r in fmea if len(r["fields"]["solution"].split()) >= 12)
    planted = {train[0]["fields"]["problem"]: test[0]["fields"]["problem"],
               train[1]["fields"]["problem"]: test[1]["fields"]["problem"].lower(),
               train[2]["fields"]["problem"]: long_test["fields"]["solution"]}

    def leaky(body):  # type: ignore[no-untyped-def]
        reply = script(body)
        problem = _problem(body)
        if problem in planted and "Play a technician" in str(body["messages"][-1]["content"]):
            return f"{planted[problem]}? Our shift saw exactly this."
        return reply

    ref = make_prepared(file_store, train, test=[*test, long_test])
    rows, rejects, stats = read_artifact(file_store, run(pipeline(), {"prepared": ref}, file_store, teacher=ScriptedBackend(leaky)))
    overlap = {r["source_ids"][0]: r for r in rejects if r["reason"] == "test_overlap"}
    assert set(overlap) == {train[0]["id"], train[1]["id"], train[2]["id"]}
    assert test[0]["id"] in overlap[train[0]["id"]]["detail"] and overlap[train[0]["id"]]["score"] == 1.0
    assert long_test["id"] in overlap[train[2]["id"]]["detail"] and overlap[train[2]["id"]]["score"] > 0.5
    assert len(rows) == 9 and stats["reasons"] == {"test_overlap": 3}


def test_length_refusal_greeting_and_broken_replies(file_store) -> None:  # type: ignore[no-untyped-def]
    behaviours = {
        "pump 1 leaks oil": "I'm sorry, but as an AI I cannot help with machinery.",
        "pump 2 leaks oil": "Hello there! Great to hear from you. Replace the seal and test.",
        "pump 3 leaks oil": "Fix it.",
        "pump 4 leaks oil": "",
        "pump 5 leaks oil": "TRUNCATED",
        "pump 6 leaks oil": "ECHO",
        "pump 7 leaks oil": "X" * 5000,
    }

    def quirky(body):  # type: ignore[no-untyped-def]
        reply = script(body)
        content = str(body["messages"][-1]["content"])
        behaviour = behaviours.get(_problem(body))
        if behaviour is None or "maintenance expert" not in content:
            return reply
        if behaviour == "TRUNCATED":
            return {"content": reply[:30], "finish_reason": "length"}
        if behaviour == "ECHO":
            return content
        return behaviour

    records = [{"id": f"r{i}", "type": "record", "fields": {"problem": f"pump {i} leaks oil", "machine": "feed pump",
                                                             "solution": f"Replace the seal kit number {i} and refill"}}
               for i in range(1, 9)]
    ref = make_prepared(file_store, records)
    rows, rejects, stats = read_artifact(file_store, run(pipeline(), {"prepared": ref}, file_store, teacher=ScriptedBackend(quirky)))
    reasons = {r["source_ids"][0]: r["reason"] for r in rejects}
    assert reasons == {"r1": "refusal", "r2": "greeting", "r3": "too_short", "r4": "answer_empty", "r5": "answer_truncated",
                       "r6": "answer_copies_prompt", "r7": "too_long"}
    assert [r["id"] for r in rows] == ["r8#p0"]
    assert next(r for r in rejects if r["reason"] == "too_short")["score"] == 7


def test_exact_and_near_duplicates(file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    base = {"machine": "haul truck", "solution": "Replace the alternator belt and check its tension"}
    records = [
        {"id": "a", "type": "record", "fields": {**base, "problem": "alternator belt squeals on cold start"}},
        {"id": "b", "type": "record", "fields": {**base, "problem": "alternator belt squeals on cold start"}},  # same text
        {"id": "c", "type": "record", "fields": {**base, "problem": "alternator belt squeals on cold start again"}},  # near
        {"id": "d", "type": "record", "fields": {**base, "problem": "dump body does not lower fully after tipping"}},
    ]
    ref = make_prepared(file_store, records)
    spec = pipeline(filters={"dedup_near": 0.8})
    rows, rejects, _ = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=scripted))
    got = {r["id"]: (r["reason"], r["detail"]) for r in rejects}
    assert got["b#p0"] == ("duplicate", "same as a#p0")
    assert got["c#p0"][0] == "near_duplicate" and got["c#p0"][1] == "same as a#p0"
    assert [r["id"] for r in rows] == ["a#p0", "d#p0"]


def test_judge_rubric_score_threshold(file_store) -> None:  # type: ignore[no-untyped-def]
    def graded(body):  # type: ignore[no-untyped-def]
        content = str(body["messages"][-1]["content"])
        if "maintenance expert" in content and "POOR" in _problem(body):
            return script(body) + " POOR"
        if "grade one example" in str(body["messages"][0]["content"]) and "bearing" in str(body["messages"][0]["content"]):
            return "Looks good to me."  # no score, and none when asked once more either
        return script(body)

    records = [{"id": f"r{i}", "type": "record", "fields": {"problem": p, "solution": "Replace the part and test the machine"}}
               for i, p in enumerate(["hydraulic hose bursts under load", "POOR cab door hinge cracked", "slew bearing grinds"])]
    ref = make_prepared(file_store, records)
    backend = ScriptedBackend(graded)
    spec = pipeline(filters={"judge": True, "min_score": 6})
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=backend))
    got = {r["id"]: (r["reason"], r["score"], r["detail"]) for r in rejects}
    assert got == {"r1#p0": ("judge_score_below_min", 3.0, "vague"),
                   "r2#p0": ("judge_no_score", None, "no usable JSON in the reply, even after one repair (last reply: 'Looks good to me.')")}
    assert [r["id"] for r in rows] == ["r0#p0"] and rows[0]["provenance"]["score"] == 8.0
    # three questions, three answers, three judge requests and one repair; the judge's ask for structured output
    assert len(backend.requests) == 3 + 3 + 3 + 1
    assert [r.json_schema["required"] for r in backend.requests if r.json_schema] == [["score", "reason"]] * 4


def test_changing_filters_reasks_nothing(shared_datasets, file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    records = fmea_records(shared_datasets, 5)
    ref = make_prepared(file_store, records)
    first = run(pipeline(), {"prepared": ref}, file_store, teacher=scripted)
    asked = len(scripted.requests)
    second = run(pipeline(filters={"max_chars": 100}), {"prepared": ref}, file_store, teacher=scripted)
    assert second.id != first.id and len(scripted.requests) == asked
    rows, rejects, stats = read_artifact(file_store, second)
    assert not rows and {r["reason"] for r in rejects} == {"too_long"} and stats["resumed_records"] == 5
    # the same spec again returns the same artifact from the content cache
    assert run(pipeline(), {"prepared": ref}, file_store, teacher=scripted) == first


def test_clean_reply_strips_labels_and_pleasantries() -> None:
    assert clean_reply('Sure! Here is the question:\nQuestion: "Why does the pump whine?"') == "Why does the pump whine?"
    assert clean_reply("**Answer:** 1. Stop the pump.\n\nBest regards,\nBob") == "1. Stop the pump."
