"""Every shared real dataset goes through the whole stage; counts add up and ids lead back to the file."""

from __future__ import annotations

import csv

from dataprep_helpers import assert_counts_add_up, assert_no_near_pair_across_splits, load_artifact, make_spec

from synthtune.dataprep import run, suggest_fields
from synthtune.dataprep.abbreviations import load_abbreviations
from synthtune.dataprep.cleaning import Cleaner, normalize_whitespace


def prepare(shared_datasets, file_store, source, prepare=None):  # type: ignore[no-untyped-def]
    return load_artifact(file_store, run(make_spec(shared_datasets, source, prepare), {}, file_store))


def kept(result):  # type: ignore[no-untyped-def]
    return [r for s in ("train", "validation", "test") for r in result[s]]


def test_excavator_raw_work_orders(shared_datasets, file_store):
    source = {"paths": ["excavator_work_orders_raw.csv"], "fields": {"problem": "OriginalShorttext", "machine": "Asset", "cost": "Cost"}}
    result = prepare(shared_datasets, file_store, source, {"required": ["problem"], "dedup": {"near": 0.9}})
    assert result["stats"]["counts"]["input"] == 5485
    assert_counts_add_up(result)
    assert result["stats"]["rejected_by_code"]["exact_duplicate"] > 500
    # Each id names the file's line; cleaning that line's text again gives the record's problem.
    lines = (shared_datasets / "excavator_work_orders_raw.csv").read_text(encoding="utf-8").splitlines()
    cleaner = Cleaner(load_abbreviations(True), True, ["problem"])
    for record in kept(result)[:300]:
        file, line = record["id"].rsplit(":", 1)
        row = next(csv.reader([lines[int(line) - 1]]))
        assert file == "excavator_work_orders_raw.csv"
        assert record["fields"]["machine"] == row[1]
        assert record["fields"]["problem"] == cleaner.clean_text(normalize_whitespace(row[2]))
    assert any(r["fields"]["problem"] == "Left hand bucket cylinder leaking." for r in kept(result))


def test_excavator_labelled_work_orders(shared_datasets, file_store):
    fields = suggest_fields(shared_datasets / "excavator_work_orders_labelled.csv")
    source = {"paths": ["excavator_work_orders_labelled.csv"], "fields": fields}
    result = prepare(shared_datasets, file_store, source, {"dedup": {"near": 0.9}})
    assert result["stats"]["counts"]["input"] == 5485
    assert_counts_add_up(result)
    stats = result["stats"]
    assert stats["top_failure_modes"]["from"] == "field 'failure_mode'"
    assert dict(stats["top_failure_modes"]["top"])["Leak"] > 100
    assert {m for m, _ in stats["top_machines"]} == {"A", "B", "C", "D", "E"}
    assert set(stats["splits"].values()) and stats["splits"]["train"] > 7 * stats["splits"]["test"]


def test_mining_truck_fmea(shared_datasets, file_store):
    fields = {"problem": "Potential Failure Mode", "cause": "Potential Cause(s) of Failure", "solution": "Recommended Action",
              "machine": "Component", "effect": "Potential Effect(s) of Failure", "rpn": "RPN"}
    result = prepare(shared_datasets, file_store, {"paths": ["mining_truck_fmea.csv"], "fields": fields})
    assert result["stats"]["counts"]["input"] == 330
    # The README: Recommended Action is filled in 192 of 330 rows.
    assert result["stats"]["rejected_by_code"]["incomplete"] == 330 - 192
    completeness = result["stats"]["field_completeness"]
    assert completeness["input"]["solution"] == round(192 / 330, 4), "completeness of the source, before dropping"
    assert completeness["kept"]["solution"] == 1.0
    assert_counts_add_up(result)
    record = kept(result)[0]
    assert record["fields"]["cause"] and record["fields"]["rpn"] and record["fields"]["effect"]


def test_maintie_json_array(shared_datasets, file_store):
    source = {"paths": ["maintie_gold.json"], "fields": {"problem": "text", "entities": "entities"}}
    result = prepare(shared_datasets, file_store, source, {"required": ["problem"], "dedup": {"near": 0.95}})
    assert result["stats"]["counts"]["input"] == 1076
    assert_counts_add_up(result)
    assert result["stats"]["split_groups"]["groups"] > 0
    assert assert_no_near_pair_across_splits(result, 0.8) > 100_000, "leak-free, checked pair by pair"
    record = kept(result)[0]
    assert record["id"].startswith("maintie_gold.json:") and record["fields"]["entities"].startswith("[")


def test_maintnorm_raw_and_normalised(shared_datasets, file_store):
    source = {"paths": ["maintnorm_train.norm"], "fields": {"problem": "raw", "normalised": "normalised"}}
    result = prepare(shared_datasets, file_store, source, {"required": ["problem"], "text_fields": ["problem"]})
    assert result["stats"]["counts"]["input"] == 9600
    assert_counts_add_up(result)
    lines = (shared_datasets / "maintnorm_train.norm").read_text(encoding="utf-8").splitlines()
    for record in kept(result)[:200]:
        start = int(record["id"].rsplit(":", 1)[1])
        block = []
        for line in lines[start - 1:]:
            if not line.strip():
                break
            block.append(line.split("\t"))
        assert record["fields"]["normalised"] == normalize_whitespace(" ".join(norm.strip() for _, norm in block if norm.strip()))


def test_field_suggestions_for_the_shared_tables(shared_datasets):
    assert suggest_fields(shared_datasets / "excavator_work_orders_raw.csv") == {"problem": "OriginalShorttext", "machine": "Asset"}
    assert suggest_fields(shared_datasets / "excavator_work_orders_labelled.csv") == {
        "problem": "OriginalShorttext", "solution": "Action", "machine": "Asset", "failure_mode": "FM"}
    assert suggest_fields(shared_datasets / "mining_truck_fmea.csv") == {
        "problem": "Potential Failure Mode", "solution": "Recommended Action", "cause": "Potential Cause(s) of Failure",
        "machine": "Subsystem"}
    assert suggest_fields(shared_datasets / "maintie_gold.json") == {"problem": "text"}


# The mapping docs recommend for the labelled excavator orders (README "Your own data" maps cause: FM and
# hours: RunningTime; FM is the failure mode, not a cause, and RunningTime is days since the asset's previous
# order on that system, not repair hours, so they travel as failure_mode and an extra instead).
EXCAVATOR_FIELDS = {"problem": "OriginalShorttext", "machine": "Asset", "solution": "Action", "failure_mode": "FM",
                    "system": "MajorSystem", "part": "Part", "running_days": "RunningTime"}


def test_excavator_labelled_with_the_recommended_mapping(shared_datasets, file_store):
    path = shared_datasets / "excavator_work_orders_labelled.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    no_action = sum(1 for r in rows if not r["Action"].strip())
    result = prepare(shared_datasets, file_store, {"paths": [path.name], "fields": EXCAVATOR_FIELDS})
    stats = result["stats"]
    assert stats["counts"]["input"] == len(rows) == 5485
    assert_counts_add_up(result)
    assert stats["rejected_by_code"]["incomplete"] == no_action == 2503, "solution (Action) is required and empty in 2,503 rows"
    assert stats["counts"]["kept"] + stats["counts"]["rejected"] == 5485
    assert sum(stats["splits"].values()) == stats["counts"]["kept"]
    for before, after in zip(stats["steps"], stats["steps"][1:], strict=False):
        assert after["in"] == before["kept"]
    completeness = stats["field_completeness"]["input"]
    assert completeness["solution"] == round(2982 / 5485, 4) and completeness["failure_mode"] == round(2303 / 5485, 4)
    assert completeness["problem"] == 1.0 and completeness["machine"] == 1.0
    assert stats["top_failure_modes"]["from"] == "field 'failure_mode'"
    assert {m for m, _ in stats["top_machines"]} == {"A", "B", "C", "D", "E"}
    kept = [r for s in ("train", "validation", "test") for r in result[s]]
    assert all("hours" not in r["fields"] and "cause" not in r["fields"] for r in kept)
    days = [float(r["fields"]["running_days"]) for r in kept if r["fields"]["running_days"]]
    assert max(days) > 1000, "days between orders, not hours of repair work"
    assert_no_near_pair_across_splits(result, 0.8)
