"""Filters: incomplete records and length outliers, each drop a reject with its reason."""

from __future__ import annotations

import json

from synthtune.dataprep.filters import drop_incomplete, drop_length_outliers
from synthtune.dataprep.rejects import Rejects
from synthtune.spec.prepare import OutlierSpec


def rec(rid: str, problem: str | None, solution: str | None = "fixed it", kind: str = "record", text: str = "") -> dict:
    return {"id": rid, "type": kind, "fields": {"problem": problem, "solution": solution}, "text": text, "source": {}}


def test_incomplete_names_the_missing_fields():
    records = [rec("a", "leak"), rec("b", None), rec("c", " ", None), rec("d", None, None, "chunk", "manual text")]
    rejects = Rejects()
    kept = drop_incomplete(records, ["problem", "solution"], rejects)
    assert [r["id"] for r in kept] == ["a", "d"], "chunks need text, not record fields"
    assert {r["id"]: r["reason"] for r in rejects.rows} == {
        "b": "missing required field(s): problem",
        "c": "missing required field(s): problem, solution",
    }


def test_iqr_fences_per_record_type():
    records = [rec(f"r{i}", f"hose leak number {i:03d}") for i in range(40)] + [rec("long", "x" * 2000)]
    records += [rec(f"c{i}", None, None, "chunk", "y" * (1400 + i)) for i in range(10)]
    rejects = Rejects()
    kept, fences = drop_length_outliers(records, OutlierSpec(), rejects)
    assert [r["id"] for r in rejects.rows] == ["long"]
    assert rejects.rows[0]["code"] == "too_long" and "(IQR rule, factor 3)" in rejects.rows[0]["reason"]
    assert len(kept) == 50 and set(fences) == {"record", "chunk"}
    assert fences["chunk"][0] > 1000, "chunks are judged against chunks, not against short tickets"


def test_explicit_bounds_and_open_upper_bound():
    records = [rec("short", "ab", "c"), rec("ok", "hydraulic leak", "replaced hose"), rec("long", "z" * 500)]
    rejects = Rejects()
    kept, _ = drop_length_outliers(records, OutlierSpec(method="bounds", min_chars=10, max_chars=100), rejects)
    assert [r["id"] for r in kept] == ["ok"]
    assert {r["id"]: r["code"] for r in rejects.rows} == {"short": "too_short", "long": "too_long"}
    _, fences = drop_length_outliers(records, OutlierSpec(method="bounds", min_chars=10), Rejects())
    assert json.loads(json.dumps(fences)) == {"record": [10.0, None]}


def test_too_few_records_for_iqr_keep_everything():
    records = [rec("a", "x"), rec("b", "y" * 1000)]
    kept, fences = drop_length_outliers(records, OutlierSpec(), Rejects())
    assert len(kept) == 2 and fences == {"record": None}
