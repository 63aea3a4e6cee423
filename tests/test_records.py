"""The prompt/reference rules every stage shares."""

from synthtune.records import combined_length, question_for_record, reference_for_record


def _rec(**fields):
    return {"id": "t.csv:2", "type": "record", "fields": fields, "text": ""}


def test_question_names_machine_and_problem():
    q = question_for_record(_rec(problem="Labels wrinkled", machine="Labeler"))
    assert "Labeler" in q and "Labels wrinkled" in q


def test_question_without_machine_still_asks():
    q = question_for_record(_rec(problem="Conveyor stops"))
    assert q.startswith("Conveyor stops") and "?" in q


def test_reference_combines_cause_solution_hours_and_skips_missing():
    ref = reference_for_record(_rec(problem="p", cause="Seal worn", solution="Replaced seal", hours="1.5"))
    assert ref == "Cause: Seal worn. Fix: Replaced seal. Expected time: 1.5 h."
    assert reference_for_record(_rec(problem="p", solution="Replaced seal")) == "Fix: Replaced seal."
    assert reference_for_record(_rec(problem="p")) == ""


def test_chunks_and_episodes_use_text():
    chunk = {"id": "m.md:c1", "type": "chunk", "fields": {}, "text": "Set torque to 2.2 Nm."}
    assert "Set torque to 2.2 Nm." in question_for_record(chunk)
    assert combined_length(chunk) == len("Set torque to 2.2 Nm.")


def test_combined_length_counts_known_fields_only():
    rec = _rec(problem="abc", solution="de", extra_note="ignored")
    assert combined_length(rec) == 5
