"""Dedup of generated examples: the first of a group is kept, every duplicate names a kept example."""

from __future__ import annotations

import random

from synthtune.generator.dedup import find_duplicates, question_shingles
from synthtune.neardup import jaccard

PARTS = ["hydraulic filter", "boom cylinder seal", "swing motor", "track idler", "fuel pump", "radiator cap", "cab door hinge"]
ASKS = ["How do I replace the {} on", "What torque does the {} need on", "When should the {} be checked on",
        "Why does the {} leak on", "Which tool removes the {} from"]


def test_exact_then_near_duplicates_name_a_kept_example() -> None:
    q = "How often should the hydraulic return filter on the excavator be replaced"
    examples = [("a", q, "Every 500 hours."), ("b", q + "?", "every 500 hours"), ("c", q + " again", "Every 500 hours."),
                ("d", "What causes the swing brake to drag", "A stuck valve."), ("e", q + " again", "Every 500 hours.")]
    got = find_duplicates(examples, 0.8)
    assert got[0] is None and got[3] is None
    assert got[1] == ("duplicate", 1.0, "a"), "same words, case and punctuation aside"
    reason, similarity, twin = got[2]  # type: ignore[misc]
    assert (reason, twin) == ("near_duplicate", "a") and similarity == round(jaccard(examples[2][1], q, question_shingles), 3) >= 0.8
    assert got[4] == got[2], "a copy of a dropped example is dropped for what that one was, naming the kept one"
    assert find_duplicates(examples, False) == [None, ("duplicate", 1.0, "a"), None, None, ("duplicate", 1.0, "c")]


def test_no_two_kept_questions_are_near_duplicates() -> None:
    rng = random.Random(4)
    examples = []
    for i in range(600):  # families of reworded questions about 7 parts on 40 machines, in random order
        ask = rng.choice(ASKS).format(rng.choice(PARTS))
        examples.append((f"x{i}", f"{ask} excavator EX{rng.randint(1, 40)} {rng.choice(['', 'today', 'please'])}", f"answer {i}"))
    got = find_duplicates(examples, 0.7)
    kept = [k for k, dup in enumerate(got) if dup is None]
    index = {eid: k for k, (eid, _, _) in enumerate(examples)}
    assert 30 < len(kept) < 600
    for k, dup in enumerate(got):
        if dup is not None:
            assert dup[0] == "near_duplicate" and dup[1] >= 0.7 and got[index[dup[2]]] is None and index[dup[2]] < k
    close = [(i, j) for n, i in enumerate(kept) for j in kept[n + 1:] if jaccard(examples[i][1], examples[j][1], question_shingles) >= 0.7]
    assert close == [], "a kept question nearly duplicates another kept one"
