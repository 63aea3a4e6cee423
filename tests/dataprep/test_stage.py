"""The stage end to end: artifact files, counts, stats and plots, the cache, progress and cancellation."""

from __future__ import annotations

import json
import random

import pytest
from dataprep_helpers import assert_counts_add_up, load_artifact, make_spec
from pdfs import text_pdf

import synthtune.dataprep.stage as stage
from store_view import artifact_ids
from synthtune.dataprep import run
from synthtune.errors import Cancelled
from synthtune.progress import Progress

FIELDS = {"problem": "Problem", "machine": "Machine", "solution": "Action", "hours": "Hours", "failure_mode": "FM"}


def orders_csv(n: int = 200, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts = ["L/H BOOM CYL", "R/H STICK CYL", "BUCKET TOOTH", "SWING MOTOR", "HYD PUMP", "TRACK ROLLER", "A/C UNIT", "ENG OIL COOLER"]
    faults = ["LEAKING", "U/S", "CRACKED", "NOISY", "LOOSE"]
    rows = ["Problem,Machine,Action,Hours,FM"]
    for i in range(n):
        part, fault = rng.choice(parts), rng.choice(faults)
        rows.append(f"{part} {fault} REF {rng.getrandbits(32):x},EX{rng.randint(1, 4)},REPL {part} AND TEST {i},{rng.randint(1, 8)},{fault.title()}")
    rows.append(rows[1])  # an exact duplicate
    rows.append("HYD HOSE BURST - CALL JOHN ON +44 20 7946 0958,EX1,,2,Leak")  # incomplete
    return "\n".join(rows) + "\n"


@pytest.fixture
def sources(tmp_path, write):  # type: ignore[no-untyped-def]
    write("orders.csv", orders_csv())
    text_pdf(tmp_path / "manual.pdf", ["\n".join(f"Step {i}: check the swing motor case drain flow number {i}." for i in range(25))])
    return {"paths": ["orders.csv", "manual.pdf"], "fields": FIELDS}


def test_run_writes_a_complete_prepared_artifact(tmp_path, sources, file_store):
    events = []
    spec = make_spec(tmp_path, sources, {"dedup": {"exact": True, "near": 0.9}, "chunk_chars": 300, "chunk_overlap": 50})
    ref = run(spec, {}, file_store, Progress("prepare", [events.append]))
    assert ref.kind == "prepared" and ref.id.startswith("prepared-")
    result = load_artifact(file_store, ref)
    manifest = result["manifest"]
    assert {"train.jsonl", "validation.jsonl", "test.jsonl", "rejects.jsonl", "stats.json", "length_histogram.png",
            "length_boxplot.png"} <= set(manifest["files"])
    for png in ("length_histogram.png", "length_boxplot.png"):
        assert result["artifact"].local_path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_counts_add_up(result)
    stats = result["stats"]
    assert manifest["stats"] == {"input": stats["counts"]["input"], **stats["splits"], "rejected": len(result["rejects"])}
    assert stats["counts"]["input"] == 202 + stats["types"]["chunk"]
    assert [s["step"] for s in stats["steps"]] == ["read", "incomplete", "exact_dedup", "near_dedup", "outliers", "split"]
    for before, after in zip(stats["steps"], stats["steps"][1:], strict=False):
        assert after["in"] == before["kept"]
    assert stats["rejected_by_code"]["incomplete"] == 1 and stats["rejected_by_code"]["exact_duplicate"] == 1
    completeness = stats["field_completeness"]
    assert completeness["input"]["solution"] == round(201 / 202, 4), "the source as read: one row lacks an action"
    assert completeness["input"]["problem"] == 1.0 and completeness["input"]["hours"] == 1.0
    assert completeness["kept"]["solution"] == 1.0, "incomplete records were dropped"
    assert stats["top_machines"][0][0].startswith("EX")
    assert stats["top_failure_modes"]["from"] == "field 'failure_mode'"
    assert stats["redactions"] == {"PHONE": 1}
    assert stats["length"]["all"]["count"] == stats["counts"]["kept"]

    kept = [r for s in ("train", "validation", "test") for r in result[s]]
    record = next(r for r in kept if r["type"] == "record")
    assert set(record) >= {"id", "type", "fields", "text", "source"}
    assert record["fields"]["problem"][0].isupper() and not record["fields"]["problem"].isupper()
    assert "cylinder" in json.dumps([r["fields"] for r in kept if r["type"] == "record"]).lower()
    chunk = next(r for r in kept if r["type"] == "chunk")
    assert chunk["id"].startswith("manual.pdf:p1:c") and chunk["source"]["page"] == 1
    incomplete = next(r for r in result["rejects"] if r["code"] == "incomplete")
    assert "[PHONE]" in incomplete["preview"], "rejects are redacted too"

    descriptions = {e.description for e in events}
    assert {"reading", "splitting"} <= descriptions


def test_cache_returns_the_same_artifact_without_work(tmp_path, sources, file_store, monkeypatch):
    spec = make_spec(tmp_path, sources)
    first = run(spec, {}, file_store)
    monkeypatch.setattr(stage, "prepare", lambda *a, **k: pytest.fail("a cached artifact must not be recomputed"))
    assert run(spec, {}, file_store) == first
    monkeypatch.undo()
    (tmp_path / "orders.csv").write_text(orders_csv(seed=1))
    assert run(spec, {}, file_store).id != first.id, "new file content, new artifact"
    reseeded = make_spec(tmp_path, sources, {"split": {"seed": 7}})
    assert run(reseeded, {}, file_store).id != first.id
    current = run(spec, {}, file_store)
    monkeypatch.setattr(stage, "FORMAT", stage.FORMAT + 1)
    assert run(spec, {}, file_store).id != current.id, "output of older code is not reused"


def test_same_input_same_split(tmp_path, sources, file_store, tmp_path_factory):
    from synthtune.store import open_store

    spec = make_spec(tmp_path, sources)
    a = load_artifact(file_store, run(spec, {}, file_store))
    other_store = open_store(str(tmp_path_factory.mktemp("other")))
    b = load_artifact(other_store, run(spec, {}, other_store))
    for name in ("train", "validation", "test", "rejects"):
        assert a[name] == b[name]


def test_cancellation_stops_the_stage(tmp_path, sources, file_store):
    progress = Progress("prepare")
    progress.cancel()
    with pytest.raises(Cancelled):
        run(make_spec(tmp_path, sources), {}, file_store, progress)
    assert artifact_ids(file_store) == []


@pytest.mark.integration
def test_run_writes_to_s3(tmp_path, sources, s3_store_uri, monkeypatch):
    from synthtune.store import open_store

    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    store = open_store(s3_store_uri)
    ref = run(make_spec(tmp_path, sources), {}, store)
    assert ref.uri.startswith("s3://")
    result = load_artifact(store, ref)
    assert_counts_add_up(result)
    assert run(make_spec(tmp_path, sources), {}, store) == ref


def test_6258_distinct_rows_give_5006_626_626(tmp_path, write, file_store):
    rng = random.Random(11)
    rows = ["Problem,Machine,Action"] + [
        f"fault {rng.getrandbits(48):x} on unit {i},EX{i % 7},fix {rng.getrandbits(48):x} {'and retest ' * rng.randint(0, 3)}"
        for i in range(6258)
    ]
    write("orders.csv", "\n".join(rows) + "\n")
    spec = make_spec(tmp_path, {"paths": ["orders.csv"], "fields": {"problem": "Problem", "machine": "Machine", "solution": "Action"}},
                     {"outliers": {"method": "none"}})
    result = load_artifact(file_store, run(spec, {}, file_store))
    assert result["manifest"]["stats"] == {"input": 6258, "train": 5006, "validation": 626, "test": 626, "rejected": 0}
    assert [len(result[s]) for s in ("train", "validation", "test")] == [5006, 626, 626]
