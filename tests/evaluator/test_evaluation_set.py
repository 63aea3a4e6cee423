"""The evaluation set never scores a reference the question already shows (records.evaluation_item's rule)."""

from __future__ import annotations

import gen_fixtures as G
import pytest
from eval_fixtures import (
    FakeAnswers,
    chunk,
    episode,
    make_prepared,
    pipeline,
    read_evaluation,
    ticket,
    user_text,
)

from synthtune.errors import InvalidInput
from synthtune.progress import Progress
from synthtune.records import evaluation_item

MIXED = [
    ticket(2, "Caps crooked", "Reset the chuck and check the torque", cause="Chuck worn"),
    ticket(3, "Label wrinkles", None, cause="Glue too cold"),  # no solution: nothing to score against
    chunk(1, "Set the capper torque to 2.2 Nm. Replace the chuck inserts every 500 hours."),
    episode(4, [("capper.jam", 1, None), ("line.speed_bpm", 0, "STOP_CAPPER")]),
    episode(5, [("capper.chute_level", "LOW", None)]),  # no command logged
]


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def test_tickets_score_their_resolution_chunks_are_skipped_episodes_expect_the_next_command():
    got = {r["id"]: evaluation_item(r, "sys") for r in MIXED}
    item, reason = got["wo.csv:2"]
    assert reason is None and item.kind == "reference" and item.reference == "Cause: Chuck worn. Fix: Reset the chuck and check the torque."
    assert got["wo.csv:3"] == (None, "empty_reference")
    assert got["manual.md:1"] == (None, "reference_in_prompt")
    assert got["line.csv:4"][0].kind == "function_call" and got["line.csv:4"][0].reference == "STOP_CAPPER"
    assert got["line.csv:5"] == (None, "no_logged_command")
    assert evaluation_item(MIXED[3], "sys", function_call=False) == (None, "function_call_not_measured")
    curated = {**MIXED[2], "reference": "Torque 2.2 Nm; inserts every 500 h."}
    assert evaluation_item(curated, "sys")[0].reference == "Torque 2.2 Nm; inserts every 500 h."


@pytest.mark.parametrize("record", [*MIXED, *G.episodes(), *G.manual_chunks()], ids=lambda r: r["id"])
def test_no_reference_is_inside_its_question(record):
    item, _ = evaluation_item(record, "sys")
    if item is not None and item.kind == "reference":
        assert _words(item.reference) not in _words(item.question)
        assert _words(item.reference.removeprefix("Fix: ")) not in _words(item.question)
    if item is not None and item.kind == "function_call":
        assert f"[command: {item.reference}]" not in item.question


def test_an_echoing_model_gains_nothing_and_skips_are_counted(file_store, monkeypatch):
    """Echoing the question used to score ROUGE ~1 on chunks and episodes; now it scores what it is worth."""
    from synthtune.evaluator import answers, run

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(lambda model, messages, t, s: user_text(messages)))
    spec = pipeline(metrics=["rouge", "bleu", "function_call"], forgetting_probe=False)
    metrics, preds = read_evaluation(file_store, run(spec, {"prepared": make_prepared(file_store, MIXED)}, file_store, Progress()))
    from synthtune.evaluator.metrics import rouge
    from synthtune.records import question_for_record, reference_for_record

    old_chunk = rouge([question_for_record(MIXED[2])], [reference_for_record(MIXED[2])])["rouge1"][0]
    assert old_chunk > 0.7  # what echoing the chunk scored under the old rule (recall 1.0)
    base = metrics["models"]["base"]
    assert base["n"] == 1 and base["rouge1"] < 0.5 and base["bleu"] < 0.1  # the ticket only
    assert base["function_name_accuracy"] == 0.0  # echoing the log calls nothing
    assert metrics["skipped"] == {"empty_reference": 1, "reference_in_prompt": 1, "no_logged_command": 1}
    assert metrics["skipped_empty_reference"] == 1 and metrics["skipped_ids"]["empty_reference"] == ["wo.csv:3"]
    assert metrics["test_records"] == 2 and {p["id"] for p in preds} == {"wo.csv:2", "line.csv:4"}


def test_a_test_split_with_nothing_to_score_names_the_reasons(file_store, monkeypatch):
    from synthtune.evaluator import answers, run

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(lambda *a: "x"))
    prepared = make_prepared(file_store, [MIXED[1], MIXED[2], MIXED[3]])
    with pytest.raises(InvalidInput, match=r"1 empty_reference.*1 reference_in_prompt.*1 function_call_not_measured.*add function_call"):
        run(pipeline(forgetting_probe=False), {"prepared": prepared}, file_store, Progress())
