"""Dedup (exact and MinHash LSH) and the split: exact sizes, seeded, stratified, leak-free."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from synthtune.dataprep.dedup import drop_exact_duplicates, drop_near_duplicates, near_representatives
from synthtune.dataprep.pipeline import split_records
from synthtune.dataprep.rejects import Rejects
from synthtune.dataprep.split import apportion, assign_splits, deal, length_bins
from synthtune.progress import Progress
from synthtune.records import combined_length
from synthtune.spec.prepare import PrepareSpec

PARTS = ["boom", "stick", "bucket", "swing motor", "track frame", "idler", "cab door", "radiator", "fuel pump", "slew ring"]
FAULTS = ["leaking oil", "cracked weld", "loose bolts", "noisy bearing", "overheating", "seized pin", "worn bushing"]
ACTIONS = ["replaced seal kit", "welded and ground flush", "torqued to spec", "greased and monitored", "flushed and refilled"]


def record(rid: str, problem: str, solution: str = "fixed", machine: str | None = None) -> dict:
    return {"id": rid, "type": "record", "fields": {"problem": problem, "solution": solution, "machine": machine}, "text": "", "source": {}}


def distinct_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(PARTS) for _ in range(rng.randint(1, 12)))
        out.append(record(f"wo.csv:{i + 2}", f"{words} {rng.choice(FAULTS)} ticket {i} code {rng.getrandbits(40):x}",
                          f"{rng.choice(ACTIONS)} after {rng.randint(1, 99)} checks, ref {rng.getrandbits(40):x}"))
    return out


def test_exact_duplicates_ignore_case_space_and_punctuation():
    records = [record("a", "Hyd leak at boom."), record("b", "HYD LEAK  AT BOOM"), record("c", "Hyd leak at boom", machine="EX2")]
    rejects = Rejects()
    kept = drop_exact_duplicates(records, rejects)
    assert [r["id"] for r in kept] == ["a", "c"]  # another machine's ticket is another record
    assert rejects.rows[0]["id"] == "b" and rejects.rows[0]["duplicate_of"] == "a"
    assert rejects.rows[0]["reason"] == "exact duplicate of a"


def test_near_duplicates_are_dropped_at_the_threshold():
    base = "replaced the left hand boom cylinder rod seal after oil leak found at the pre-start inspection"
    records = [record("a", base), record("b", base + " again"), record("c", "bucket teeth worn, replaced all five teeth and adapters"),
               record("d", base.replace("left", "right"))]
    rejects = Rejects()
    kept, signatures = drop_near_duplicates(records, 0.8, 128, 5, rejects, Progress("t"))
    assert [r["id"] for r in kept] == ["a", "c"]
    assert {(r["id"], r["duplicate_of"]) for r in rejects.rows} == {("b", "a"), ("d", "a")}
    assert set(signatures) == {"a", "c"}
    rejects = Rejects()
    kept, _ = drop_near_duplicates(records, 0.99, 128, 5, rejects, Progress("t"))
    assert len(kept) == 4 and len(rejects) == 0


def test_near_representatives_reuse_known_signatures():
    texts = ["pump seal leaking at the main hydraulic pump flange", "pump seal leaking at the main hydraulic pump flange!", "cab glass cracked"]
    ids = ["a", "b", "c"]
    reps, sigs = near_representatives(ids, texts, 0.9, 64, 5, Progress("t"))
    assert reps == [0, 0, 2]
    again, _ = near_representatives(["a", "c"], ["", ""], 0.9, 64, 5, Progress("t"), known=sigs)
    assert again == [0, 1], "known signatures are used instead of the (empty) texts"


def test_apportion_is_largest_remainder():
    assert apportion(6258, [0.8, 0.1, 0.1]) == [5006, 626, 626]
    assert apportion(10, [0.8, 0.1, 0.1]) == [8, 1, 1]
    assert apportion(7, [1, 0, 0]) == [7, 0, 0]
    assert sum(apportion(12345, [0.7, 0.2, 0.1])) == 12345


def test_6258_distinct_records_split_5006_626_626():
    records = distinct_records(6258)
    splits, groups = split_records(records, PrepareSpec(), Progress("t"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 5006, "validation": 626, "test": 626}
    assert groups["groups"] == 0


def test_split_is_deterministic_order_free_and_seeded():
    records = distinct_records(2000, seed=1)
    ids = [r["id"] for r in records]
    lengths = [combined_length(r) for r in records]
    one = assign_splits(ids, lengths, list(range(2000)), [0.8, 0.1, 0.1], 42, 10)
    assert one == assign_splits(ids, lengths, list(range(2000)), [0.8, 0.1, 0.1], 42, 10)
    order = list(range(2000))
    random.Random(5).shuffle(order)
    shuffled = assign_splits([ids[i] for i in order], [lengths[i] for i in order], list(range(2000)), [0.8, 0.1, 0.1], 42, 10)
    assert {ids[i]: s for i, s in zip(order, shuffled, strict=True)} == dict(zip(ids, one, strict=True))
    other = assign_splits(ids, lengths, list(range(2000)), [0.8, 0.1, 0.1], 7, 10)
    assert other != one and Counter(other) == Counter(one)


def test_every_length_bin_is_shared_in_proportion():
    records = distinct_records(3000, seed=2)
    ids = [r["id"] for r in records]
    lengths = [combined_length(r) for r in records]
    split = assign_splits(ids, lengths, list(range(3000)), [0.8, 0.1, 0.1], 42, 10)
    bins = length_bins(lengths, list(range(3000)), 10)
    for b in range(10):
        counts = Counter(s for s, x in zip(split, bins, strict=True) if x == b)
        size = sum(counts.values())
        assert abs(counts[0] - 0.8 * size) <= 2 and abs(counts[1] - 0.1 * size) <= 2 and abs(counts[2] - 0.1 * size) <= 2
    means = [sum(lengths[i] for i in range(3000) if split[i] == s) / Counter(split)[s] for s in range(3)]
    assert max(means) - min(means) < 0.03 * means[0]


def test_near_duplicate_groups_never_straddle_splits():
    rng = random.Random(3)
    records = distinct_records(1500, seed=3)
    # 120 families of 2-6 near-identical tickets each, shuffled among the rest
    for fam in range(120):
        text = f"{rng.getrandbits(64):x} {rng.choice(PARTS)} {rng.choice(FAULTS)} {rng.getrandbits(64):x} {rng.choice(ACTIONS)}"
        for k in range(rng.randint(2, 6)):
            records.append(record(f"dup{fam}-{k}", text + "." * k, "rerouted hose"))
    rng.shuffle(records)
    splits, groups = split_records(records, PrepareSpec(), Progress("t"))
    where = {r["id"]: name for name, rows in splits.items() for r in rows}
    for fam in range(120):
        assert len({s for rid, s in where.items() if rid.startswith(f"dup{fam}-")}) == 1
    assert groups["groups"] == 120
    assert {k: len(v) for k, v in splits.items()} == dict(zip(["train", "validation", "test"], apportion(len(records), [0.8, 0.1, 0.1]), strict=True))


def test_split_without_grouping_and_with_an_empty_split():
    records = distinct_records(50)
    spec = PrepareSpec.model_validate({"split": {"train": 0.9, "validation": 0.1, "test": 0.0, "group_near": False}})
    splits, groups = split_records(records, spec, Progress("t"))
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [45, 5, 0]
    assert groups["threshold"] is False


def test_deal_every_prefix_is_proportional():
    dealt = deal(100, [80, 10, 10])
    assert Counter(dealt) == {0: 80, 1: 10, 2: 10}
    for end in range(10, 101, 10):
        assert Counter(dealt[:end])[1] == end // 10


@pytest.mark.parametrize("bad", [{"group_near": 1.5}, {"train": 0.5}])
def test_split_spec_is_validated(bad):
    with pytest.raises(ValueError):
        PrepareSpec.model_validate({"split": bad})
