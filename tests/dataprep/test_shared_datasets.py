"""Every shared real dataset goes through prepare, and the counts always add up."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _all(art):
    return [r for s in ("train", "validation", "test") for r in art.iter_jsonl(f"{s}.jsonl")]


def _check_counts(art, stats):
    kept = _all(art)
    rejects = list(art.iter_jsonl("rejects.jsonl"))
    assert stats["kept"] + stats["rejected"] == stats["input"]
    assert len(rejects) == stats["rejected"]
    assert all(r["id"] and r["reason"] for r in rejects)
    assert len({r["id"] for r in kept}) == len(kept)
    return kept, rejects


def test_excavator_raw(prepare, shared_datasets):
    art, stats = prepare(
        f"  paths: [{shared_datasets / 'excavator_work_orders_raw.csv'}]\n"
        "  fields: {problem: OriginalShorttext, machine: Asset}",
        "prepare:\n  required: [problem]\n  dedup: {exact: true, near: 0.9}\n",
    )
    kept, rejects = _check_counts(art, stats)
    assert stats["input"] == 5485
    assert any("exact duplicate" in r["reason"] for r in rejects)
    # Shorthand expanded and shouting case normalised.
    texts = [r["fields"]["problem"] for r in kept]
    assert any("left-hand" in t and "cylinder" in t for t in texts)
    assert not any(t.isupper() and len(t) > 10 for t in texts)
    assert set(stats["splits"]) == {"train", "validation", "test"}


def test_excavator_labelled_with_unnamed_index(prepare, shared_datasets):
    art, stats = prepare(
        f"  paths: [{shared_datasets / 'excavator_work_orders_labelled.csv'}]\n"
        "  fields: {problem: OriginalShorttext, machine: MajorSystem, cause: FM, solution: Action, hours: RunningTime}\n"
        "  id_column: id",
        "prepare:\n  required: [problem, solution]\n",
    )
    kept, rejects = _check_counts(art, stats)
    assert stats["input"] == 5485
    assert any(r["reason"].startswith("incomplete: missing solution") for r in rejects)
    assert all(r["fields"]["solution"] for r in kept)


def test_fmea_with_empty_cells(prepare, shared_datasets):
    art, stats = prepare(
        f"  paths: [{shared_datasets / 'mining_truck_fmea.csv'}]\n"
        "  fields: {problem: Potential Failure Mode, machine: Component, cause: Potential Cause(s) of Failure, "
        "solution: Recommended Action, effects: Potential Effect(s) of Failure}",
    )
    kept, rejects = _check_counts(art, stats)
    assert stats["input"] == 330
    assert sum(1 for r in rejects if "missing solution" in r["reason"]) == 330 - 192
    assert all("effects" in r["fields"] for r in kept)


def test_maintie_json(prepare, shared_datasets):
    art, stats = prepare(
        f"  paths: [{shared_datasets / 'maintie_gold.json'}]\n  fields: {{problem: text}}",
        "prepare:\n  required: [problem]\n",
    )
    _check_counts(art, stats)
    assert stats["input"] == 1076


def test_maintnorm_tokens(prepare, shared_datasets):
    art, stats = prepare(
        f"  paths: [{shared_datasets / 'maintnorm_train.norm'}]\n  fields: {{problem: raw_text, solution: normalised_text}}",
        "prepare:\n  outliers: {method: none}\n",
    )
    kept, _ = _check_counts(art, stats)
    assert stats["input"] == 9600
