"""Function-call accuracy scores what event_scenario teaches: the logged command as an OpenAI tool call."""

from __future__ import annotations

import json

import gen_fixtures as G
import pytest
from eval_fixtures import FakeAnswers, episode, make_prepared, pipeline, read_evaluation, user_text

from synthtune.evaluator import metrics as M
from synthtune.generator.methods.event_scenario import EventScenario, command_name, logged_command
from synthtune.records import command_tool, episode_question, evaluation_item, expected_call
from synthtune.records import logged_command as records_logged_command

COMMANDS = ["STOP_CONVEYOR", "REDUCE_SPEED", "SWITCH_TO_BACKUP_PUMP", "REQUEST_TOOL_CHANGE",
            {"name": "CALL_MAINTENANCE", "description": "Page the maintenance technician on duty."}]
DATAPREP_EPISODE = episode(7, [("capper.infeed_sensor", "BLOCKED", None), ("line.speed_bpm", 0, "STOP CAPPER!"),
                               ("capper.chute_level", "OK", None), ("capper.infeed_sensor", "CLEAR", "START_CAPPER"),
                               ("capper.motor_current_a", 3.1, None)])


def test_expected_call_is_derived_as_the_generator_derives_it():
    for ep in [*G.episodes(), DATAPREP_EPISODE]:
        assert records_logged_command(ep) == logged_command(ep)
        assert expected_call(ep)["name"] == logged_command(ep)
    assert expected_call(DATAPREP_EPISODE) == {"name": "START_CAPPER", "arguments": None}
    assert command_name("STOP CAPPER!") == "STOP_CAPPER_"
    for c in COMMANDS:
        assert command_tool(c) == EventScenario._tool(c)


def test_the_question_hides_the_command_it_expects():
    question = episode_question(DATAPREP_EPISODE, ["STOP_CONVEYOR"])
    assert "capper.infeed_sensor = CLEAR" in question  # the signal the command answered
    assert "[command: START_CAPPER]" not in question and "motor_current" not in question  # the answer and what followed
    assert "[command: STOP CAPPER!]" in question  # earlier commands are history
    assert "Available commands: STOP_CONVEYOR, STOP_CAPPER_, START_CAPPER." in question
    item, reason = evaluation_item(DATAPREP_EPISODE, "sys", function_call=True)
    assert reason is None and item.kind == "function_call" and item.reference == "START_CAPPER"
    assert [t["function"]["name"] for t in item.tools] == ["STOP_CAPPER_", "START_CAPPER"]


@pytest.fixture
def generated_rows(file_store):  # type: ignore[no-untyped-def]
    """event_scenario output from the scripted teacher: the exact shape a tuned model learns from."""
    from teacher_script import ScriptedBackend

    from synthtune.generator import run

    eps = G.episodes()
    spec = G.pipeline(methods=[{"name": "event_scenario", "pairs_per_record": 2, "options": {"commands": COMMANDS}}],
                      filters={"min_chars": 10})
    rows, rejects, _ = G.read_artifact(file_store, run(spec, {"prepared": G.make_prepared(file_store, eps)}, file_store, teacher=ScriptedBackend()))
    logged = [r for r in rows if r["provenance"]["variant"]["logged"]]
    assert len(logged) == len(eps) and not rejects
    by_id = {e["id"]: e for e in eps}
    return [(by_id[r["provenance"]["source_ids"][0]], r) for r in logged]


def test_replies_in_every_tool_call_shape_score_against_the_held_out_episode(generated_rows):
    from synthtune.trainer.data import _renderable

    for ep, row in generated_rows:
        answer = row["messages"][-1]
        call = answer["tool_calls"][0]["function"]
        as_trained = _renderable([answer])[0]["content"]  # rationale, then {"tool_calls": [{"name", "arguments": {...}}]}
        openai_json = json.dumps({"content": answer["content"], "tool_calls": answer["tool_calls"]})  # arguments as JSON text
        tagged = f'<tool_call>\n{{"name": "{call["name"]}", "arguments": {call["arguments"]}}}\n</tool_call>'
        fenced = f"{answer['content']}\n```json\n{json.dumps({'name': call['name'], 'parameters': json.loads(call['arguments'])})}\n```"
        replies = [as_trained, openai_json, tagged, fenced]
        expected = [expected_call(ep)] * len(replies)
        assert M.function_call_accuracy(replies, expected) == {
            "function_call_rate": 1.0, "function_name_accuracy": 1.0, "function_args_accuracy": 1.0}, replies


def test_wrong_name_bad_arguments_and_prose_do_not_score(generated_rows):
    ep, row = generated_rows[0]
    right = row["messages"][-1]["tool_calls"][0]["function"]["name"]
    replies = [
        json.dumps({"tool_calls": [{"name": "CALL_MAINTENANCE", "arguments": {}}]}),  # another command
        json.dumps({"tool_calls": [{"type": "function", "function": {"name": right, "arguments": "[1, 2]"}}]}),  # not an object
        json.dumps({"tool_calls": [{"type": "function", "function": {"name": right, "arguments": "{not json"}}]}),
        f"I would {right.lower().replace('_', ' ')} now.",  # prose, no call
        json.dumps({"name": "issue_command", "arguments": {"command": right}}),  # the old, untaught shape
    ]
    score = M.function_call_accuracy(replies, [expected_call(ep)] * len(replies))
    assert score == {"function_call_rate": pytest.approx(4 / 5), "function_name_accuracy": pytest.approx(2 / 5),
                     "function_args_accuracy": 0.0}


def test_logged_arguments_are_compared_as_parsed_json():
    ep = episode(1, [("pe14", "BLOCKED", "STOP_CONVEYOR")])
    ep["events"][0]["arguments"] = '{"target": "conveyor 3"}'
    exp = expected_call(ep)
    assert exp == {"name": "STOP_CONVEYOR", "arguments": {"target": "conveyor 3"}}
    good = '{"tool_calls": [{"type": "function", "function": {"name": "STOP_CONVEYOR", "arguments": "{\\"target\\":  \\"conveyor 3\\"}"}}]}'
    other = '{"tool_calls": [{"name": "STOP_CONVEYOR", "arguments": {"target": "conveyor 4"}}]}'
    assert M.function_call_accuracy([good, other], [exp, exp])["function_args_accuracy"] == 0.5


def test_the_stage_offers_the_tools_and_scores_episodes_by_their_call(file_store, monkeypatch):
    """Through evaluate: tools offered, episodes out of ROUGE, function-call accuracy per model."""
    from synthtune.evaluator import answers, run
    from synthtune.progress import Progress

    eps = [episode(1, [("capper.jam", 1, "STOP_CAPPER")]), episode(2, [("filler.pressure", 2.4, "RAISE_BOWL_PRESSURE")])]
    tickets = [{"id": "wo.csv:2", "type": "record", "fields": {"problem": "Caps crooked", "machine": "capper", "solution": "Reset the chuck"},
                "text": ""}]

    def reply(model, messages, temperature, sample):  # type: ignore[no-untyped-def]
        text = user_text(messages)
        if "Available commands" not in text:
            return "Fix: Reset the chuck."
        wanted = "STOP_CAPPER" if "capper.jam" in text else "RAISE_BOWL_PRESSURE"
        name = wanted if model != "base" else "STOP_CONVEYOR"
        return f"The signals call for it.\n{json.dumps({'tool_calls': [{'name': name, 'arguments': {'target': 'line'}}]})}"

    fake = FakeAnswers(reply)
    monkeypatch.setattr(answers, "generate_answers", fake)
    from eval_fixtures import make_adapter

    spec = pipeline(methods=[{"name": "event_scenario", "options": {"commands": ["STOP_CONVEYOR"]}}],
                    metrics=["rouge", "function_call"], forgetting_probe=False)
    ref = run(spec, {"prepared": make_prepared(file_store, [*eps, *tickets]),
                     "adapter:event_scenario": make_adapter(file_store, "smollm2-135m-instruct")}, file_store, Progress())
    metrics, preds = read_evaluation(file_store, ref)
    prompts = fake.calls[0]["prompts"]
    assert [t["function"]["name"] for t in prompts[0].tools] == ["STOP_CONVEYOR", "STOP_CAPPER"]
    assert prompts[0].messages[0]["content"].startswith("You are the decision assistant") and prompts[2].tools is None
    tuned, base = metrics["models"]["tuned:event_scenario"], metrics["models"]["base"]
    assert tuned["function_name_accuracy"] == 1.0 and tuned["function_args_accuracy"] == 1.0 and tuned["function_calls"] == 2
    assert base["function_name_accuracy"] == 0.0 and base["function_call_rate"] == 1.0
    assert tuned["n"] == 1 and tuned["rouge1"] == pytest.approx(1.0)  # ROUGE on the ticket only
    assert metrics["function_call_records"] == 2 and metrics["reference_records"] == 1
    episode_rows = [p for p in preds if p["kind"] == "function_call"]
    assert {p["reference"] for p in episode_rows} == {"STOP_CAPPER", "RAISE_BOWL_PRESSURE"}
    assert all(p["expected_call"]["name"] == p["reference"] for p in episode_rows)
