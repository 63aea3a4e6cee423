"""Cleaning, redaction, dedup, split and caching behaviour of the prepare stage."""

from __future__ import annotations

import csv
import random

import pytest

from synthtune.dataprep.split import split_by_length
from synthtune.dataprep.suggest import suggest_fields


def _rows(n, seed=0):
    rng = random.Random(seed)
    words = ["pump", "seal", "leak", "hose", "bearing", "noise", "motor", "belt", "valve", "cylinder", "filter", "sensor", "guard", "chain"]
    return [[f"{' '.join(rng.choices(words, k=rng.randint(3, 12)))} {i}", f"{' '.join(rng.choices(words, k=rng.randint(3, 20)))} fix {i}"] for i in range(n)]


def test_thesis_split_sizes_are_exact():
    rng = random.Random(1)
    lengths = [rng.randint(20, 2000) for _ in range(6258)]
    names = split_by_length(lengths, list(range(6258)), [0.8, 0.1, 0.1], seed=42, bins=10)
    assert (names.count("train"), names.count("validation"), names.count("test")) == (5006, 626, 626)


def test_split_is_deterministic_and_stratified():
    rng = random.Random(2)
    lengths = [rng.randint(10, 1000) for _ in range(2000)]
    a = split_by_length(lengths, list(range(2000)), [0.8, 0.1, 0.1], seed=7, bins=10)
    assert a == split_by_length(lengths, list(range(2000)), [0.8, 0.1, 0.1], seed=7, bins=10)
    assert a != split_by_length(lengths, list(range(2000)), [0.8, 0.1, 0.1], seed=8, bins=10)
    mean = {s: sum(n for n, x in zip(lengths, a, strict=True) if x == s) / a.count(s) for s in ("train", "test")}
    assert abs(mean["train"] - mean["test"]) / mean["train"] < 0.1


def test_groups_never_straddle_splits():
    lengths = list(range(100, 1100))
    groups = [i - i % 5 for i in range(1000)]  # groups of five
    names = split_by_length(lengths, groups, [0.8, 0.1, 0.1], seed=1, bins=10)
    for g in set(groups):
        assert len({names[i] for i in range(1000) if groups[i] == g}) == 1


def test_prepare_cleans_redacts_and_adds_up(prepare, tmp_path):
    rows = _rows(40) + [
        ["L/H BUCKET CYL LEAKING", "REPL SEAL, call j.doe@plant.example or +44 20 7946 0958"],
        ["L/H BUCKET CYL LEAKING", "REPL SEAL, call j.doe@plant.example or +44 20 7946 0958"],  # exact duplicate
        ["", "no problem text"],  # incomplete
    ]
    with open(tmp_path / "a.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Problem", "Fix"])
        w.writerows(rows)
    art, stats = prepare("  paths: [a.csv]\n  fields: {problem: Problem, solution: Fix}")
    kept = [r for s in ("train", "validation", "test") for r in art.iter_jsonl(f"{s}.jsonl")]
    rejects = list(art.iter_jsonl("rejects.jsonl"))
    assert stats["input"] == 43 and stats["kept"] + stats["rejected"] == 43
    assert {r["reason"].split(":")[0].split(" of ")[0] for r in rejects} >= {"incomplete", "exact duplicate"}
    bucket = next(r for r in kept if "bucket" in r["fields"]["problem"].lower())
    assert bucket["fields"]["problem"] == "left-hand bucket cylinder leaking"
    assert "[EMAIL]" in bucket["fields"]["solution"] and "[PHONE]" in bucket["fields"]["solution"]
    assert "j.doe" not in bucket["fields"]["solution"]
    assert {"length_histogram.png", "length_boxplot.png"} <= set(art.files)
    assert stats["completeness"]["problem"] == 1.0


def test_same_inputs_reuse_the_cached_artifact(prepare, tmp_path):
    with open(tmp_path / "a.csv", "w", newline="") as f:
        csv.writer(f).writerows([["Problem", "Fix"], *_rows(12)])
    a, _ = prepare("  paths: [a.csv]\n  fields: {problem: Problem, solution: Fix}")
    b, _ = prepare("  paths: [a.csv]\n  fields: {problem: Problem, solution: Fix}")
    assert a.id == b.id
    (tmp_path / "a.csv").write_text((tmp_path / "a.csv").read_text() + "new leak,new fix\n")
    c, _ = prepare("  paths: [a.csv]\n  fields: {problem: Problem, solution: Fix}")
    assert c.id != a.id


def test_excel_every_sheet_and_named_sheet(prepare, tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Line1"
    ws.append(["Problem", "Fix"])
    ws.append(["filler foaming at start", "raised bowl pressure"])
    ws2 = wb.create_sheet("Line2")
    ws2.append(["Problem", "Fix"])
    ws2.append(["capper cross threading", "replaced chuck inserts"])
    wb.save(tmp_path / "w.xlsx")
    _, stats = prepare("  paths: [w.xlsx]\n  fields: {problem: Problem, solution: Fix}")
    assert stats["kept"] == 2
    _, stats = prepare("  paths: [w.xlsx]\n  fields: {problem: Problem, solution: Fix}\n  sheet: Line2")
    assert stats["kept"] == 1


def test_jsonl_and_parquet(prepare, tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text(json.dumps({"Problem": "belt slipping on drive", "Fix": "tensioned"}) + "\nnot json\n")
    art, stats = prepare("  paths: [a.jsonl]\n  fields: {problem: Problem, solution: Fix}", "prepare:\n  outliers: {method: none}\n")
    assert stats["kept"] == 1 and stats["rejected"] == 1
    pq.write_table(pa.table({"Problem": ["gearbox hot", "chain noisy"], "Fix": ["oil changed", "chain replaced"]}), tmp_path / "a.parquet")
    _, stats = prepare("  paths: [a.parquet]\n  fields: {problem: Problem, solution: Fix}")
    assert stats["kept"] == 2


def test_suggest_fields_on_real_headers(shared_datasets):
    mapping = suggest_fields(shared_datasets / "excavator_work_orders_labelled.csv")
    assert mapping["problem"] == "OriginalShorttext"
    assert mapping["solution"] == "Action"
    fmea = suggest_fields(shared_datasets / "mining_truck_fmea.csv")
    assert fmea["solution"] == "Recommended Action" and fmea["cause"] == "Potential Cause(s) of Failure"


@pytest.mark.parametrize("threshold", [0.6])
def test_near_duplicates_are_dropped(prepare, tmp_path, threshold):
    with open(tmp_path / "a.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Problem", "Fix"])
        w.writerow(["conveyor stops at transfer to capper", "cleaned lens and realigned photo eye to reflector"])
        w.writerow(["conveyor stops at transfer to capper again", "cleaned lens and realigned photo eye to reflector"])
        w.writerow(["filler head seven underfilling", "replaced valve seat and o-ring"])
    art, stats = prepare("  paths: [a.csv]\n  fields: {problem: Problem, solution: Fix}", f"prepare:\n  dedup: {{exact: true, near: {threshold}}}\n")
    assert stats["kept"] == 2
    assert any("near duplicate of a.csv:2" in r["reason"] for r in art.iter_jsonl("rejects.jsonl"))
