"""Helpers for dataprep tests: specs from dicts, reading a prepared artifact back, count checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthtune.spec import PipelineSpec


def make_spec(base_dir: Path | str, source: dict[str, Any], prepare: dict[str, Any] | None = None, **more: Any) -> PipelineSpec:
    data: dict[str, Any] = {"version": 1, "name": "t", "source": source, "base_dir": str(base_dir)}
    if prepare is not None:
        data["prepare"] = prepare
    data.update(more)
    return PipelineSpec.model_validate(data)


def load_artifact(store: Any, ref: Any) -> dict[str, Any]:
    art = store.open(ref)
    out: dict[str, Any] = {name: list(art.iter_jsonl(f"{name}.jsonl")) for name in ("train", "validation", "test", "rejects")}
    out["stats"] = art.read_json("stats.json")
    out["manifest"] = art.manifest
    out["artifact"] = art
    return out


def assert_counts_add_up(result: dict[str, Any]) -> None:
    stats = result["stats"]
    kept = sum(len(result[s]) for s in ("train", "validation", "test"))
    assert stats["counts"]["input"] == kept + len(result["rejects"])
    assert all(r.get("id") and r.get("reason") for r in result["rejects"])
    ids = [r["id"] for s in ("train", "validation", "test") for r in result[s]] + [r["id"] for r in result["rejects"]]
    assert len(ids) == len(set(ids)), "every input record appears exactly once"


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_no_near_pair_across_splits(result: dict[str, Any], threshold: float = 0.8, k: int = 5) -> int:
    """Brute force: no record in validation or test has exact shingle Jaccard >= ``threshold`` with a
    record of another split. Returns how many such cross-split pairs were compared."""
    from synthtune.dataprep.dedup import content_text

    def shingle_set(text: str) -> frozenset[bytes]:  # an oracle of its own, not the code under test
        data = text.encode("utf-8")
        return frozenset([data]) if len(data) <= k else frozenset(data[i:i + k] for i in range(len(data) - k + 1))

    sets = {s: [shingle_set(content_text(r)) for r in result[s]] for s in ("train", "validation", "test")}
    compared = 0
    for held in ("validation", "test"):
        others = [t for s in ("train", "validation", "test") if s != held for t in sets[s]]
        for a in sets[held]:
            for b in others:
                compared += 1
                assert len(a & b) / len(a | b) < threshold, f"a {held} record nearly duplicates one in another split: {sorted(a)[:5]}"
    return compared
