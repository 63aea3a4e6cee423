"""Exporters (OpenAI fine-tuning JSONL, Alpaca) and the transformers teacher end to end with SmolLM2."""

from __future__ import annotations

import json

import pytest
from gen_fixtures import episodes, excavator_records, make_prepared, pipeline, read_artifact

from synthtune.errors import InvalidInput
from synthtune.generator import run
from synthtune.generator.export import export_artifact


def test_export_openai_and_alpaca(shared_datasets, file_store, scripted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ref = make_prepared(file_store, [*excavator_records(shared_datasets, 3), *episodes()[:2]])
    spec = pipeline(methods=[{"name": "record_qa"}, {"name": "event_scenario", "label": "events"}], filters={"min_chars": 10})
    qa = run(spec, {"prepared": ref}, file_store, method="record_qa", teacher=scripted)
    ev = run(spec, {"prepared": ref}, file_store, method="events", teacher=scripted)

    assert export_artifact(file_store, qa, "openai", tmp_path / "qa.jsonl") == 3
    lines = [json.loads(x) for x in (tmp_path / "qa.jsonl").read_text().splitlines()]
    assert all(set(x) == {"messages"} and [m["role"] for m in x["messages"]] == ["system", "user", "assistant"] for x in lines)

    assert export_artifact(file_store, ev, "openai", tmp_path / "ev.jsonl") == 2
    first = json.loads((tmp_path / "ev.jsonl").read_text().splitlines()[0])
    assert set(first) == {"messages", "tools"} and first["messages"][-1]["tool_calls"][0]["type"] == "function"

    assert export_artifact(file_store, ev, "alpaca", tmp_path / "ev.json") == 2
    alpaca = json.loads((tmp_path / "ev.json").read_text())
    assert set(alpaca[0]) == {"instruction", "input", "output", "system"}
    call = json.loads(alpaca[0]["output"].splitlines()[-1])
    assert call["name"] == "STOP_CONVEYOR" and isinstance(call["arguments"], dict)
    with pytest.raises(InvalidInput, match="unknown export format 'csv'"):
        export_artifact(file_store, qa, "csv", tmp_path / "x")
    with pytest.raises(InvalidInput, match="not 'synthetic'"):
        export_artifact(file_store, ref, "openai", tmp_path / "x")


@pytest.mark.slow
def test_record_qa_with_the_embedded_smollm2_teacher(shared_datasets, file_store, one_torch_thread) -> None:  # type: ignore[no-untyped-def]
    records = excavator_records(shared_datasets, 2)
    ref = make_prepared(file_store, records)
    spec = pipeline(teacher={"backend": "transformers", "max_tokens": 32, "temperature": 0, "concurrency": 2},
                    filters={"min_chars": 1})
    out = run(spec, {"prepared": ref}, file_store)
    rows, rejects, stats = read_artifact(file_store, out)
    assert stats["input_records"] == 2 and stats["failed_records"] == 0
    seen = {s for r in rows for s in r["provenance"]["source_ids"]} | {s for r in rejects for s in r["source_ids"]}
    assert seen == {r["id"] for r in records}
    assert stats["tokens"]["completion"] > 0 and stats["teacher"] == "transformers:smollm2-135m-instruct"
    for row in rows:
        assert row["messages"][1]["content"].strip() and row["messages"][2]["content"].strip()
    # a small model may well be filtered, but never silently: every reject says why
    assert all(r["reason"] for r in rejects)
