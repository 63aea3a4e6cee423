"""Dedup (exact and MinHash LSH) and the split: exact sizes, seeded, stratified, leak-free."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from synthtune.dataprep.dedup import content_text, drop_exact_duplicates, drop_near_duplicates
from synthtune.dataprep.pipeline import split_records
from synthtune.dataprep.rejects import Rejects
from synthtune.dataprep.split import apportion, assign_splits, deal, length_bins
from synthtune.neardup import (
    BUCKET_WINDOW,
    FULL_BUCKET,
    GROUP_MISS,
    LEADERS,
    NearDuplicates,
    char_shingles,
    jaccard,
    recall_bands,
    signatures,
)
from synthtune.progress import Progress
from synthtune.records import combined_length
from synthtune.spec.prepare import PrepareSpec

PARTS = ["boom", "stick", "bucket", "swing motor", "track frame", "idler", "cab door", "radiator", "fuel pump", "slew ring"]
FAULTS = ["leaking oil", "cracked weld", "loose bolts", "noisy bearing", "overheating", "seized pin", "worn bushing"]
ACTIONS = ["replaced seal kit", "welded and ground flush", "torqued to spec", "greased and monitored", "flushed and refilled"]


SHINGLES = char_shingles(5)


def near(texts: list[str], threshold: float, num_perm: int = 128, ids: list[str] | None = None, known: dict | None = None) -> NearDuplicates:
    return NearDuplicates(texts, threshold, num_perm, SHINGLES, Progress("t"), "near", ids or [], known)


def exact_jaccard(a: str, b: str) -> float:
    return jaccard(a, b, SHINGLES)


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


def test_near_duplicates_reuse_known_signatures():
    texts = ["pump seal leaking at the main hydraulic pump flange", "pump seal leaking at the main hydraulic pump flange!", "cab glass cracked"]
    kept, sigs = drop_near_duplicates([record(rid, t) for rid, t in zip("abc", texts, strict=True)], 0.9, 64, 5, Rejects(), Progress("t"))
    assert [r["id"] for r in kept] == ["a", "c"] and set(sigs) == {"a", "c"}
    assert near(["", ""], 0.9, 64, ids=["a", "c"], known=sigs).first_kept() == [0, 1], "known signatures are used instead of the (empty) texts"
    assert near(["", ""], 0.9, 64, ids=["a", "c"]).first_kept() == [0, 0], "without them the two empty texts are one"


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


# --- near-duplicate groups: connected components, leak-free, order-free ---------------------------------------------

def _words(seed: int, n: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(24):x}" for _ in range(n)]


def _chain(seed: int) -> tuple[str, str, str]:
    """A~B and B~C above 0.8, A~C well below: sliding windows over one list of random words."""
    w = _words(seed)
    return " ".join(w[0:40]), " ".join(w[3:43]), " ".join(w[7:47])


def _jaccard(a: str, b: str) -> float:
    return exact_jaccard(content_text(record("x", a, "x")), content_text(record("y", b, "x")))


def test_recall_bands_miss_few_pairs_at_the_threshold():
    assert recall_bands(0.8, 128) == (21, 6)
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        bands, rows = recall_bands(threshold, 128)
        assert bands * rows <= 128 and (1 - threshold**rows) ** bands <= GROUP_MISS
        assert (1 - threshold ** (rows + 1)) ** (128 // (rows + 1)) > GROUP_MISS, "the most rows that reach the recall"


def test_a_chain_of_near_duplicates_never_straddles_splits():
    a, b, c = _chain(0)
    assert _jaccard(a, b) >= 0.84 and 0.8 <= _jaccard(b, c) < 0.82 and _jaccard(a, c) < 0.72
    for seed in range(40):
        records = distinct_records(300, seed=seed) + [record(f"A{seed}", a, "x"), record(f"B{seed}", b, "x"), record(f"C{seed}", c, "x")]
        splits, groups = split_records(records, PrepareSpec.model_validate({"split": {"seed": seed}}), Progress("t"))
        where = {r["id"]: name for name, rows in splits.items() for r in rows}
        assert where[f"A{seed}"] == where[f"B{seed}"] == where[f"C{seed}"], f"seed {seed}: {where[f'A{seed}']}/{where[f'B{seed}']}/{where[f'C{seed}']}"
        assert groups["groups"] == 1 and groups["largest"] == 3


def test_many_chains_are_each_one_group():
    chains = [_chain(100 + k) for k in range(60)]
    texts = [content_text(record("x", t, "x")) for chain in chains for t in chain]
    groups = near(texts, 0.8).groups()
    for k in range(60):
        assert groups[3 * k] == groups[3 * k + 1] == groups[3 * k + 2], f"chain {k}"
    assert len(set(groups)) == 60, "different chains stay apart"


def _pair_just_below_by_estimate() -> tuple[str, str, float, float]:
    """Two texts whose exact Jaccard reaches 0.8 while their MinHash estimate is below it."""
    for seed in range(500):
        w = _words(1000 + seed)
        a, b = " ".join(w[0:40]), " ".join(w[4:44])
        ta, tb = content_text(record("x", a, "x")), content_text(record("y", b, "x"))
        exact = exact_jaccard(ta, tb)
        sa, sb = signatures([ta, tb], 128, SHINGLES)
        estimate = float(np.count_nonzero(sa == sb)) / 128
        if exact >= 0.8 > estimate:
            return a, b, exact, estimate
    raise AssertionError("no such pair found")


def test_a_true_pair_whose_estimate_is_just_below_the_threshold_is_grouped_and_deduplicated():
    a, b, exact, estimate = _pair_just_below_by_estimate()
    assert exact >= 0.8 > estimate
    texts = [content_text(record("x", t, "x")) for t in (a, b)]
    assert len(set(near(texts, 0.8).groups())) == 1
    assert near(texts, 0.8).first_kept() == [0, 0]
    for seed in range(20):
        records = distinct_records(200, seed=seed) + [record("a", a, "x"), record("b", b, "x")]
        splits, _ = split_records(records, PrepareSpec.model_validate({"split": {"seed": seed}}), Progress("t"))
        where = {r["id"]: name for name, rows in splits.items() for r in rows}
        assert where["a"] == where["b"]


def test_groups_hold_every_pair_above_the_threshold_by_brute_force():
    rng = random.Random(9)
    texts = []
    for fam in range(100):  # families of edited copies at assorted similarities, and unrelated records
        w = _words(5000 + fam, 50)
        for _ in range(rng.randint(1, 6)):
            words = list(w[:40])
            for _ in range(rng.randint(0, 6)):
                words[rng.randrange(len(words))] = f"{rng.getrandbits(24):x}"
            texts.append(content_text(record("x", " ".join(words), "x")))
    rng.shuffle(texts)
    groups = near(texts, 0.8).groups()
    above = [(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts)) if exact_jaccard(texts[i], texts[j]) >= 0.8]
    assert len(above) > 100 and sum(1 for i, j in above if exact_jaccard(texts[i], texts[j]) < 0.85) > 20
    assert all(groups[i] == groups[j] for i, j in above)
    # Groups are components: every member is linked to another by a pair that passed, not just any pair sharing a band.
    for g in set(groups):
        members = [i for i in range(len(texts)) if groups[i] == g]
        if len(members) > 1:
            assert all(any(exact_jaccard(texts[i], texts[j]) >= 0.7 for j in members if j != i) for i in members)


def test_split_with_groups_does_not_depend_on_input_order():
    records = distinct_records(800, seed=4)
    for k in range(30):
        a, b, c = _chain(200 + k)
        records += [record(f"c{k}a", a, "x"), record(f"c{k}b", b, "x"), record(f"c{k}c", c, "x")]
    spec = PrepareSpec.model_validate({"split": {"seed": 3}})
    first, groups = split_records(records, spec, Progress("t"))
    assert groups["groups"] == 30
    shuffled = list(records)
    random.Random(8).shuffle(shuffled)
    again, _ = split_records(shuffled, spec, Progress("t"))
    place = {r["id"]: name for name, rows in first.items() for r in rows}
    assert place == {r["id"]: name for name, rows in again.items() for r in rows}


def test_near_dedup_keeps_the_first_and_drops_what_nearly_duplicates_a_kept_record():
    a, b, c = _chain(0)  # A~B 0.85, B~C 0.81, A~C 0.70
    rejects = Rejects()
    kept, _ = drop_near_duplicates([record("a", a, "x"), record("b", b, "x"), record("c", c, "x")], 0.8, 128, 5, rejects, Progress("t"))
    assert [r["id"] for r in kept] == ["a", "c"], "C is not a near duplicate of a kept record"
    assert [(r["id"], r["duplicate_of"]) for r in rejects.rows] == [("b", "a")]
    rejects = Rejects()
    kept, _ = drop_near_duplicates([record("b", b, "x"), record("a", a, "x"), record("c", c, "x")], 0.8, 128, 5, rejects, Progress("t"))
    assert [r["id"] for r in kept] == ["b"] and {r["duplicate_of"] for r in rejects.rows} == {"b"}


def test_templated_records_keep_the_grouping_linear():
    """Thousands of tickets from one template share LSH buckets; pairing every bucket fully would be quadratic."""
    n = 3000
    texts = [f"REPLACE HYDRAULIC RETURN FILTER ELEMENT ON EXCAVATOR AFTER SERVICE INTERVAL CHECK NUMBER {i}" for i in range(n)]
    grouping = near(texts, 0.8)
    groups = grouping.groups()
    bands, _ = recall_bands(0.8, 128)
    # One family of 3,000: paired fully that is 4.5 million pairs a band; along the window, linear.
    assert grouping.info["candidate_pairs"] <= n * bands * max(BUCKET_WINDOW + LEADERS, FULL_BUCKET)
    assert len(set(groups)) <= 10  # and the family still chains into (almost) one group
    reps = near(texts, 0.9).first_kept()
    assert len(reps) == n
    kept = [i for i in range(n) if reps[i] == i]
    assert len(kept) <= 10, "dedup meets the family's first record despite the window"
    assert all(exact_jaccard(texts[i], texts[reps[i]]) >= 0.9 for i in range(n) if reps[i] != i), "and drops only what is near"
