"""Train/validation/test split stratified by length, deterministic, never splitting a group."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

SPLITS = ("train", "validation", "test")


def _quotas(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder rounding, ties to the earlier split: 6,258 at .8/.1/.1 -> 5006/626/626."""
    raw = [n * r for r in ratios]
    counts = [int(x) for x in raw]
    order = sorted(range(len(ratios)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def split_by_length(lengths: Sequence[int], groups: Sequence[int], ratios: Sequence[float], seed: int, bins: int) -> list[str]:
    """The split name for each item; items of one group (near-duplicates) land together."""
    n = len(lengths)
    targets = _quotas(n, ratios)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    # Order groups by length, shuffled within quantile bins, then deal them round-robin-by-deficit:
    # each bin contributes to every split in proportion, so the length distribution matches.
    rng = random.Random(seed)
    ordered = sorted(members, key=lambda g: (max(lengths[i] for i in members[g]), g))
    bin_size = max(1, -(-len(ordered) // max(1, bins)))
    assignment = [""] * n
    filled = [0, 0, 0]
    for b in range(0, len(ordered), bin_size):
        chunk = ordered[b : b + bin_size]
        rng.shuffle(chunk)
        for g in chunk:
            size = len(members[g])
            # The split furthest below its share of what has been placed so far takes the group.
            placed = sum(filled) + size
            deficits = [targets[k] * placed / n - filled[k] if targets[k] > filled[k] else float("-inf") for k in range(3)]
            k = max(range(3), key=lambda k: (deficits[k], -k))
            if deficits[k] == float("-inf"):
                k = max(range(3), key=lambda k: targets[k] - filled[k])
            filled[k] += size
            for i in members[g]:
                assignment[i] = SPLITS[k]
    return assignment
