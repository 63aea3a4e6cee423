"""The `direct` control (no teacher) and the grounding/repetition filters, on the shared excavator work orders."""

from __future__ import annotations

from gen_fixtures import excavator_records, make_prepared, pipeline, read_artifact
from teacher_script import ScriptedBackend, script

from synthtune.generator import run
from synthtune.records import evaluation_item

SYSTEM = "You are an experienced maintenance engineer."


def _problem_line(body):  # type: ignore[no-untyped-def]
    import re

    match = re.search(r"^Problem:\s*(.+)$", str(body["messages"][-1]["content"]), re.M)
    return match.group(1).strip() if match else ""


def test_direct_asks_no_teacher_and_trains_on_what_evaluation_asks(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 30)
    ref = make_prepared(file_store, records[:20], test=records[20:])
    # An unreachable teacher: direct must never talk to it (or load any model).
    spec = pipeline(methods=[{"name": "direct"}], teacher={"backend": "openai", "model": "x", "base_url": "http://127.0.0.1:9/v1"})
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store))
    assert len(rows) + len(rejects) == 20 and stats["teacher"] == "none (field template)" and stats["kept_share"] == len(rows) / 20
    by_id = {r["id"]: r for r in records}
    for row in rows:
        item, _ = evaluation_item(by_id[row["provenance"]["source_ids"][0]], SYSTEM)
        assert item is not None
        user, answer = row["messages"][1]["content"], row["messages"][2]["content"]
        assert (user, answer) == (item.question, item.reference)  # the field template is evaluation's question and reference


def test_direct_field_templates_can_be_changed(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 5)
    ref = make_prepared(file_store, records)
    spec = pipeline(methods=[{"name": "direct", "options": {"question": "{{ machine }} | {{ problem }} | {{ cause }}", "answer": "{{ solution }}"}}],
                    filters={"decontaminate": False})
    rows, _, _ = read_artifact(file_store, run(spec, {"prepared": ref}, file_store))
    first = records[0]["fields"]
    assert rows[0]["messages"][1]["content"] == f"{first['machine']} | {first['problem']} | {first.get('cause', '')}".strip()
    assert rows[0]["messages"][2]["content"] == first["solution"]


def test_chit_chat_echoes_and_loops_are_rejected_with_their_reason_and_score(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    """The pairs the issue found in a real run (teacher chit-chat that ignores the record, loops) are caught."""
    records = [r for r in excavator_records(shared_datasets, 80)
               if r["fields"]["solution"] == "Replace" and "replac" not in r["fields"]["problem"].lower()][:8]
    chatty, looping, echo = (records[0]["fields"]["problem"], records[1]["fields"]["problem"], records[2]["fields"]["problem"])

    def teacher(body):  # type: ignore[no-untyped-def]
        problem, answering = _problem_line(body), "expert" in str(body["messages"][-1]["content"])
        if answering and problem == chatty:
            return "I am pleased to report that I have identified a solution to your concern, and I will follow up shortly with more details."
        if answering and problem == looping:
            return "Check the hydraulic hose first. " + "Then check it again to be sure it holds. " * 6
        if answering and problem == echo:  # the technician's question back, nothing added
            asked = str(body["messages"][-1]["content"]).split('"')[1]
            return f"So: {asked}"
        return script(body)

    ref = make_prepared(file_store, records)
    rows, rejects, stats = read_artifact(file_store, run(pipeline(filters={"min_chars": 1, "dedup_near": False}), {"prepared": ref},
                                                         file_store, teacher=ScriptedBackend(teacher)))
    reasons = {r["source_ids"][0]: r for r in rejects}
    assert reasons[records[0]["id"]]["reason"] == "ungrounded" and reasons[records[0]["id"]]["score"] == 0.0
    assert "solution" in reasons[records[0]["id"]]["detail"]
    assert reasons[records[1]["id"]]["reason"] == "repetitive"
    assert reasons[records[2]["id"]]["reason"] == "ungrounded"  # carries no action word (and adds nothing to the question)
    kept = {row["provenance"]["source_ids"][0] for row in rows}
    assert kept == {r["id"] for r in records[3:]}  # the scripted teacher's answers carry the record's action: kept
    assert stats["reasons"]["ungrounded"] == 2 and stats["kept_share"] == round(5 / 8, 4)


def test_grounding_can_be_turned_off(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 3)

    def off_topic(body):  # type: ignore[no-untyped-def]
        if "expert" in str(body["messages"][-1]["content"]):
            return "Thank you for sharing the information, we appreciate the detailed report from the shop floor."
        return script(body)

    ref = make_prepared(file_store, records)
    spec = pipeline(filters={"grounding": False, "min_chars": 1, "dedup_near": False, "refusals": False})
    rows, rejects, _ = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=ScriptedBackend(off_topic)))
    assert len(rows) == 3 and not rejects


def test_an_answer_that_only_restates_the_question_is_ungrounded(shared_datasets) -> None:  # type: ignore[no-untyped-def]
    from synthtune.generator.filters import grounding
    from synthtune.generator.methods.base import Candidate

    record = next(r for r in excavator_records(shared_datasets, 400)
                  if r["fields"]["solution"] == "Replace" and "replace" in r["fields"]["problem"].lower() and len(r["fields"]["problem"].split()) >= 3)
    question = f"My {record['fields']['problem'].lower()} job is waiting, what should I do?"

    def pair(answer: str) -> Candidate:
        return Candidate("x#p0", [record["id"]], [{"role": "user", "content": question}, {"role": "assistant", "content": answer}])

    verdict = grounding(pair(f"You should {record['fields']['problem'].lower()}."), record, 0.5)
    assert verdict is not None and verdict.reason == "ungrounded" and "restates the question" in verdict.detail
    assert grounding(pair(f"{record['fields']['problem'].capitalize()}: isolate the machine, fit the new part, then test under load."),
                     record, 0.5) is None
