"""Train/validation/test split: exact sizes, stratified by length, groups kept whole, seeded.

Sizes come from the ratios by largest remainder (6,258 at 0.8/0.1/0.1 give 5006/626/626).
Groups of near duplicates go first, each to one split drawn in proportion to the room left;
single records then fill the remaining places, sorted by length bin and a seeded hash of
their id, and dealt out so every bin is shared in proportion. A record's place depends
only on the seed, its id, its length and the other records: not on the input order.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence

SPLITS = ("train", "validation", "test")


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``total`` (largest remainder)."""
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return [0] * len(weights)
    quotas = [total * w / weight_sum for w in weights]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def seeded_key(seed: int, rid: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}\x1f{rid}".encode(), digest_size=8).digest(), "big")


def length_bins(lengths: Sequence[int], keys: Sequence[int], bins: int) -> list[int]:
    """Equal-count quantile bins by rank, ties broken by the seeded key."""
    n = len(lengths)
    order = sorted(range(n), key=lambda i: (lengths[i], keys[i]))
    out = [0] * n
    for rank, i in enumerate(order):
        out[i] = rank * bins // n
    return out


def deal(count: int, remaining: list[int]) -> list[int]:
    """Split indices for ``count`` places in order, every prefix as close to ``remaining``'s shares as can be."""
    total = sum(remaining)
    given = [0] * len(remaining)
    out = []
    for pos in range(count):
        open_splits = [s for s in range(len(remaining)) if given[s] < remaining[s]]
        best = max(open_splits, key=lambda s: (remaining[s] * (pos + 1) / total - given[s], -s))
        given[best] += 1
        out.append(best)
    return out


def assign_splits(
    ids: Sequence[str],
    lengths: Sequence[int],
    groups: Sequence[int],
    ratios: Sequence[float],
    seed: int,
    bins: int,
) -> list[int]:
    """The split index (0 train, 1 validation, 2 test) of each record; ``groups[i]`` is its group's id."""
    n = len(ids)
    if n == 0:
        return []
    targets = apportion(n, ratios)
    keys = [seeded_key(seed, rid) for rid in ids]
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    result = [-1] * n
    given = [0] * len(ratios)
    # Groups first, largest first, each to a split drawn in proportion to the room it has left.
    multi = sorted((m for m in members.values() if len(m) > 1), key=lambda m: (-len(m), min(keys[i] for i in m)))
    for m in multi:
        room = [max(t - g, 0) for t, g in zip(targets, given, strict=True)]
        fits = [s for s in range(len(ratios)) if room[s] >= len(m)]
        if fits:
            draw = min(keys[i] for i in m) / 2**64 * sum(room[s] for s in fits)
            chosen = fits[-1]
            for s in fits:
                draw -= room[s]
                if draw < 0:
                    chosen = s
                    break
        else:
            chosen = max(range(len(ratios)), key=lambda s: (room[s], -s))
        for i in m:
            result[i] = chosen
        given[chosen] += len(m)
    singles = [m[0] for m in members.values() if len(m) == 1]
    if singles:
        left = len(singles)
        room = [max(t - g, 0) for t, g in zip(targets, given, strict=True)]
        remaining = room if sum(room) == left else apportion(left, room if sum(room) else list(ratios))
        single_bins = length_bins([lengths[i] for i in singles], [keys[i] for i in singles], bins)
        order = sorted(range(left), key=lambda j: (single_bins[j], keys[singles[j]]))
        dealt = deal(left, remaining)
        for pos, j in enumerate(order):
            result[singles[j]] = dealt[pos]
    return result
