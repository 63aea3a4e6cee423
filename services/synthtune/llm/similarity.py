"""MinHash near-duplicate grouping shared by data preparation and generation."""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"\w+")


def shingles(text: str, n: int = 3) -> set[bytes]:
    tokens = _TOKEN.findall(text.lower())
    if len(tokens) < n:
        return {" ".join(tokens).encode()} if tokens else {b""}
    return {" ".join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)}


def minhash_groups(texts: Sequence[str], threshold: float, num_perm: int = 128, seed: int = 1) -> list[int]:
    """For each text, the index of its group's first member (itself when it has no near-duplicate)."""
    from datasketch import MinHash, MinHashLSH

    # LSH bands tuned towards recall; candidates are then checked against the estimated Jaccard,
    # so the extra candidates cost a comparison, never a wrong drop.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.2, 0.8))
    group = list(range(len(texts)))
    hashes = MinHash.bulk([list(shingles(t)) for t in texts], num_perm=num_perm, seed=seed)
    for i, mh in enumerate(hashes):
        matches = [j for j in lsh.query(mh) if mh.jaccard(hashes[j]) >= threshold]
        if matches:
            group[i] = min(group[j] for j in matches)
        lsh.insert(i, mh)
    return group
