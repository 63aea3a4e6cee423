"""Each method produces valid chat data from the shared datasets, the test manual and the event log."""

from __future__ import annotations

import json

import pytest
from gen_fixtures import (
    episodes,
    excavator_records,
    fmea_records,
    make_prepared,
    manual_chunks,
    pipeline,
    read_artifact,
)

from synthtune.errors import InvalidInput
from synthtune.generator import run
from synthtune.generator.methods import METHODS
from synthtune.generator.templates import load_prompts, versions


def check_valid(rows, rejects, stats, source_ids):  # type: ignore[no-untyped-def]
    """Shape and accounting every synthetic artifact must satisfy."""
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "system" and "user" in roles and roles[-1] == "assistant"
        assert all(isinstance(m.get("content"), str) for m in row["messages"])
        prov = row["provenance"]
        assert set(prov) >= {"source_ids", "method", "teacher", "prompt_version", "temperature", "seed"}
        assert set(prov["source_ids"]) <= source_ids
        # what each request of this example was really sent with
        assert prov["requests"], prov
        assert all(isinstance(r["seed"], int) and isinstance(r["temperature"], int | float) for r in prov["requests"].values())
        if prov["method"] == "document_qa":
            assert [r["temperature"] for k, r in prov["requests"].items() if k.endswith(".a")] == [0.0]
    for rej in rejects:
        assert rej["id"] and rej["reason"] and "score" in rej
    assert stats["records"] == len(rows) and stats["rejected"] == len(rejects)
    # every input record ends generated, filtered with a reason, or failed with a reason
    seen = {s for r in rows for s in r["provenance"]["source_ids"]} | {s for r in rejects for s in r["source_ids"]}
    assert seen == source_ids
    assert stats["generated_records"] + stats["filtered_records"] + stats["failed_records"] == stats["input_records"]


def test_every_method_is_registered_with_versioned_prompts() -> None:
    assert set(METHODS) == {"record_qa", "document_qa", "event_scenario", "evol", "persona", "direct"}
    for name in [*METHODS, "judge"]:
        assert versions(name), name
        assert load_prompts(name).version == versions(name)[-1]
    with pytest.raises(InvalidInput, match="no prompt version 'v9'"):
        load_prompts("record_qa", "v9")


@pytest.mark.parametrize("dataset", ["fmea", "excavator"])
def test_record_qa_two_roles_from_shared_datasets(shared_datasets, file_store, scripted, dataset) -> None:  # type: ignore[no-untyped-def]
    records = (fmea_records if dataset == "fmea" else excavator_records)(shared_datasets, 12)
    ref = make_prepared(file_store, records)
    spec = pipeline(methods=[{"name": "record_qa", "pairs_per_record": 2}], filters={"dedup_near": False})
    out = run(spec, {"prepared": ref}, file_store, method="record_qa", teacher=scripted)
    rows, rejects, stats = read_artifact(file_store, out)
    check_valid(rows, rejects, stats, {r["id"] for r in records})
    assert out.kind == "synthetic" and len(rows) == 24 and not rejects
    for row in rows:
        # Each pair is its record's: the technician's question as the teacher wrote it, then the expert's answer to it.
        assert row["provenance"]["source_ids"] == [row["id"].split("#")[0]]
        assert row["messages"][1]["content"] == scripted.replies[row["id"] + ".q"].text
        assert row["messages"][2]["content"] == scripted.replies[row["id"] + ".a"].text
        assert row["provenance"]["prompt_version"] == "v1" and row["provenance"]["method"] == "record_qa"
    # the two pairs of one record were asked from different angles
    assert len({r["messages"][1]["content"] for r in rows}) == 24
    assert stats["tokens"]["total"] > 0


def test_document_qa_grounded_in_manual_chunks(file_store) -> None:  # type: ignore[no-untyped-def]
    from teacher_script import ScriptedBackend, script

    def teacher(body):  # type: ignore[no-untyped-def]
        if "REFUSED" in str(body["messages"]) and "using only the manual excerpt" in str(body["messages"][-1]["content"]):
            return "NOT IN EXCERPT."  # the answer prompt's way to say the excerpt does not answer it
        return script(body)

    chunks = manual_chunks()
    bad = {"id": "manual.md:99", "type": "chunk", "fields": {}, "text": "UNSUPPORTED section. The gearbox is sealed for life.",
           "source": {"file": "manual.md", "page": 99}}
    refused = {"id": "manual.md:98", "type": "chunk", "fields": {}, "text": "REFUSED section. The cab heater has two speeds.",
               "source": {"file": "manual.md", "page": 98}}
    ref = make_prepared(file_store, [*chunks, bad, refused])
    spec = pipeline(methods=[{"name": "document_qa", "pairs_per_record": 2}])
    backend = ScriptedBackend(teacher)
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=backend))
    check_valid(rows, rejects, stats, {c["id"] for c in [*chunks, bad, refused]})
    assert len(rows) >= len(chunks)
    for row in rows:  # kept: the teacher's answer, with the share of its words found in the chunk (min_support 0.6)
        assert row["messages"][2]["content"] == backend.replies[row["id"] + ".a"].text
        assert row["provenance"]["score"] >= 0.6
    by_reason = {reason: {r["source_ids"][0] for r in rejects if r["reason"] == reason} for reason in {r["reason"] for r in rejects}}
    assert by_reason["unsupported_by_chunk"] == {"manual.md:99"} and by_reason["not_in_chunk"] == {"manual.md:98"}
    assert all(r["score"] < 0.6 and "of the answer's words are in its chunk" in r["detail"]
               for r in rejects if r["reason"] == "unsupported_by_chunk")


def test_event_scenario_tool_calls_and_brainstorm_tree(file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    eps = episodes()
    ref = make_prepared(file_store, eps)
    commands = ["STOP_CONVEYOR", "REDUCE_SPEED", "SWITCH_TO_BACKUP_PUMP", "REQUEST_TOOL_CHANGE",
                {"name": "CALL_MAINTENANCE", "description": "Page the maintenance technician on duty."}]
    spec = pipeline(methods=[{"name": "event_scenario", "pairs_per_record": 4, "options": {"commands": commands}}],
                    filters={"min_chars": 10})
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=scripted))
    check_valid(rows, rejects, stats, {e["id"] for e in eps})
    assert len(rows) == 16 and not rejects
    logged = {e["id"]: [ev["command"] for ev in e["events"] if ev["command"]][-1] for e in eps}
    for row in rows:
        assert {t["function"]["name"] for t in row["tools"]} >= {logged[row["provenance"]["source_ids"][0]]}
        call = row["messages"][-1]["tool_calls"][0]
        assert call["type"] == "function" and isinstance(json.loads(call["function"]["arguments"]), dict)
        assert row["messages"][-1]["content"]  # the short rationale
        variant = row["provenance"]["variant"]
        assert {"fault", "state", "timing"} <= set(variant)
        if variant["logged"]:
            assert call["function"]["name"] == logged[row["provenance"]["source_ids"][0]]
    variants = {(r["provenance"]["variant"]["fault"], r["provenance"]["variant"]["state"]) for r in rows}
    assert len(variants) > 4  # the tree covers more than the logged case


def test_event_scenario_rejects_wrong_and_missing_calls(file_store) -> None:  # type: ignore[no-untyped-def]
    from teacher_script import ScriptedBackend, script

    def contrary(body):  # type: ignore[no-untyped-def]
        reply = script(body)
        if body.get("tools") and "jam_sensor" in str(body["messages"]):
            return {"content": "Restarting is fine.", "tool_calls": [{"name": "REDUCE_SPEED", "arguments": {}}]}
        if body.get("tools") and "spindle" in str(body["messages"]):
            return "I would stop it."  # no call: one repair is asked
        if "Reply with only one JSON object" in str(body["messages"][-1]["content"]) and "spindle" in str(body["messages"]):
            return "still not JSON"
        if body.get("tools") and "tool_wear" in str(body["messages"]):
            return "Change the tool."  # no call: the repair's JSON answer (the script's) is kept
        if body.get("tools") and "pump_a_status" in str(body["messages"]):
            return {"content": "Blow it up.", "tool_calls": [{"name": "SELF_DESTRUCT", "arguments": {}}]}
        return reply

    eps = episodes()
    ref = make_prepared(file_store, eps)
    options = {"commands": ["STOP_CONVEYOR", "REDUCE_SPEED", "SWITCH_TO_BACKUP_PUMP", "REQUEST_TOOL_CHANGE"]}
    spec = pipeline(methods=[{"name": "event_scenario", "pairs_per_record": 1, "options": options}], filters={"min_chars": 10})
    backend = ScriptedBackend(contrary)
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=backend))
    reasons = {r["source_ids"][0]: r["reason"] for r in rejects}
    assert reasons == {"line1.log:ep1": "disagrees_with_log", "line1.log:ep2": "no_tool_call", "line1.log:ep3": "unknown_command"}
    details = {r["source_ids"][0]: r["detail"] for r in rejects}
    assert details["line1.log:ep2"] == "no usable JSON in the reply, even after one repair (last reply: 'still not JSON')"
    assert details["line1.log:ep1"] == "called REDUCE_SPEED, the log shows STOP_CONVEYOR"
    assert details["line1.log:ep3"].startswith("'SELF_DESTRUCT' is not one of ")
    # ep4 answered in prose, then with JSON when asked once more: its example has the repaired call and rationale.
    [row] = rows
    call = row["messages"][-1]["tool_calls"][0]["function"]
    assert row["provenance"]["source_ids"] == ["line1.log:ep4"] and call["name"] == "REQUEST_TOOL_CHANGE"
    assert row["messages"][-1]["content"] == "The reported signals call for request tool change to protect the equipment."
    assert set(row["provenance"]["requests"]) == {"v0.s", "v0.d", "v0.r"} and row["provenance"]["requests"]["v0.r"]["temperature"] == 0.0
    assert len(backend.requests) == 4 + 4 + 2  # situations, decisions, one repair each for ep2 and ep4


def test_evol_deepens_and_constrains_seed_questions(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    from teacher_script import ScriptedBackend, script

    records = fmea_records(shared_datasets, 6)
    stuck = records[0]["fields"]["problem"]

    def teacher(body):  # type: ignore[no-untyped-def]
        content = str(body["messages"][-1]["content"])
        if "act as a question rewriter" in content and stuck in content:
            return content.split("Given question:", 1)[-1].strip()  # the question back, unchanged
        return script(body)

    ref = make_prepared(file_store, records)
    # the scripted teacher's suffixes are boilerplate, so near-dup would (rightly) fold them
    spec = pipeline(methods=[{"name": "evol", "pairs_per_record": 3, "options": {"rounds": 2}}], filters={"dedup_near": False})
    backend = ScriptedBackend(teacher)
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=backend))
    check_valid(rows, rejects, stats, {r["id"] for r in records})
    assert len(rows) == 15 and {r["id"]: r["reason"] for r in rejects} == {f"{records[0]['id']}#p{k}": "evolution_unchanged" for k in range(3)}
    for row in rows:
        # The question is the second round's rewrite, not the seed; the answer is to that question.
        variant = row["provenance"]["variant"]
        assert len(variant["steps"]) == 2 and variant["seed_question"] != row["messages"][1]["content"]
        assert row["messages"][1]["content"] == backend.replies[row["id"] + ".e1"].text
        assert row["messages"][2]["content"] == backend.replies[row["id"] + ".a"].text
    assert {tuple(r["provenance"]["variant"]["steps"]) for r in rows} == {("deepen", "constraints"), ("constraints", "concretise"), ("concretise", "deepen")}
    assert not any(k.startswith(records[0]["id"] + "#") and k.endswith(".a") for k in backend.replies)  # nothing answered for a stuck record


def test_persona_people_and_languages(shared_datasets, file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 4)
    ref = make_prepared(file_store, records)
    spec = pipeline(methods=[{"name": "persona", "options": {"languages": ["English", "German"]}}],
                    filters={"dedup_near": False})
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=scripted))
    check_valid(rows, rejects, stats, {r["id"] for r in records})
    assert len(rows) == 4 * 3 * 2 and not rejects
    assert {r["provenance"]["variant"]["persona"] for r in rows} == {"new operator", "technician", "shift supervisor"}
    # Each kept example is in its variant's language by the product's own detector (not by a phrase the script echoes).
    from synthtune.llm.language import detect_language, language_code

    for r in rows:
        for message in r["messages"][1:]:
            found = detect_language(message["content"])
            assert found is None or found[0] == language_code(r["provenance"]["variant"]["language"]), (r["id"], message["content"])
    assert sum(r["provenance"]["variant"]["language"] == "German" for r in rows) == 12


def test_persona_answer_in_wrong_language_is_rejected(shared_datasets, file_store) -> None:  # type: ignore[no-untyped-def]
    from teacher_script import ScriptedBackend, script

    def english_only(body):  # type: ignore[no-untyped-def]
        return script({**body, "messages": [{**m, "content": str(m["content"]).replace("written in German", "")}
                                              for m in body["messages"]]})

    records = excavator_records(shared_datasets, 3)
    ref = make_prepared(file_store, records)
    spec = pipeline(methods=[{"name": "persona", "options": {"languages": ["German"], "personas": ["technician"]}}])
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=ScriptedBackend(english_only)))
    assert not rows and {r["reason"] for r in rejects} == {"wrong_language"} and len(rejects) == 3
    assert stats["empty"] is True  # an empty method output is reported, not fatal


def test_method_given_records_without_needed_fields_is_bad_input(file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    records = [{"id": f"r{i}", "type": "record", "fields": {"problem": f"pump {i} leaks"}} for i in range(3)]
    ref = make_prepared(file_store, records)
    with pytest.raises(InvalidInput, match=r"method record_qa needs the fields solution") as err:
        run(pipeline(methods=[{"name": "record_qa"}]), {"prepared": ref}, file_store, teacher=scripted)
    assert err.value.exit_code == 2 and "r0" in str(err.value)
    with pytest.raises(InvalidInput, match=r"method document_qa needs prepared records of type 'chunk'.*3 'record'"):
        run(pipeline(methods=[{"name": "document_qa"}]), {"prepared": ref}, file_store, teacher=scripted)
    assert not scripted.requests


def test_some_records_missing_a_field_are_rejected_not_fatal(file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    records = [{"id": f"r{i}", "type": "record", "fields": {"problem": f"hydraulic pump number {i} leaks oil at the seal",
                                                             "solution": "Replace the shaft seal and refill the oil" if i else ""}}
               for i in range(3)]
    ref = make_prepared(file_store, records)
    rows, rejects, stats = read_artifact(file_store, run(pipeline(), {"prepared": ref}, file_store, teacher=scripted))
    assert len(rows) == 2 and rejects == [{"id": "r0", "reason": "missing_fields", "score": None, "source_ids": ["r0"],
                                           "detail": "lacks solution"}]


def test_limit_samples_by_seed_and_a_larger_limit_reuses_finished_records(shared_datasets, file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    records = fmea_records(shared_datasets, 10)
    ref = make_prepared(file_store, records)
    small = read_artifact(file_store, run(pipeline(limit=3), {"prepared": ref}, file_store, teacher=scripted))
    again = read_artifact(file_store, run(pipeline(limit=3, filters={"min_chars": 5}), {"prepared": ref}, file_store, teacher=scripted))
    picked = {r["provenance"]["source_ids"][0] for r in small[0]}
    assert len(picked) == 3 and picked == {r["provenance"]["source_ids"][0] for r in again[0]}
    asked = len(scripted.requests)
    bigger = read_artifact(file_store, run(pipeline(limit=5), {"prepared": ref}, file_store, teacher=scripted))
    assert picked < {r["provenance"]["source_ids"][0] for r in bigger[0]}
    assert len(scripted.requests) - asked == 2 * 2 and bigger[2]["resumed_records"] == 3


def test_cancel_between_steps_keeps_finished_shards(shared_datasets, file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    from synthtune.errors import Cancelled
    from synthtune.progress import Progress

    records = fmea_records(shared_datasets, 12)
    ref = make_prepared(file_store, records)
    progress = Progress("generate")
    progress.add_listener(lambda e: progress.cancel() if "records:" in e.message else None)
    spec = pipeline(shard_size=4, teacher={"concurrency": 1})
    with pytest.raises(Cancelled):
        run(spec, {"prepared": ref}, file_store, progress=progress, teacher=scripted)
    asked = len(scripted.requests)
    assert asked == 4 * 2  # one shard of four records, question and answer each
    rows, rejects, stats = read_artifact(file_store, run(spec, {"prepared": ref}, file_store, teacher=scripted))
    assert stats["resumed_records"] == 4 and len(scripted.requests) - asked == 8 * 2


def test_token_counts_and_cost_from_a_price_table(shared_datasets, file_store, scripted) -> None:  # type: ignore[no-untyped-def]
    ref = make_prepared(file_store, fmea_records(shared_datasets, 4))
    free = read_artifact(file_store, run(pipeline(), {"prepared": ref}, file_store, teacher=scripted))[2]
    asked = len(scripted.requests)
    priced = pipeline(teacher={"price_per_1k_input": 0.5, "price_per_1k_output": 2.0})
    stats = read_artifact(file_store, run(priced, {"prepared": ref}, file_store, teacher=scripted))[2]
    assert len(scripted.requests) == asked  # a price is not a reason to ask again
    tokens = stats["tokens"]
    assert free["cost"] is None and tokens == free["tokens"] and tokens["prompt"] > 0 and tokens["completion"] > 0
    assert stats["cost"] == round(tokens["prompt"] / 1000 * 0.5 + tokens["completion"] / 1000 * 2.0, 6)
