"""Exact duplicates by normalised content; near duplicates by MinHash LSH over character shingles."""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from synthtune.dataprep.rejects import Rejects
from synthtune.progress import Progress
from synthtune.records import KNOWN_FIELDS

CONTENT_FIELDS = ("problem", "cause", "solution")
_BATCH = 4096
_NOT_WORD = re.compile(r"[\W_]+")


def normalized(value: Any) -> str:
    """Case-folded words without punctuation: what two copies of one ticket share."""
    return "" if value is None else _NOT_WORD.sub(" ", str(value).casefold()).strip()


def exact_key(record: dict[str, Any]) -> str:
    fields = record.get("fields") or {}
    parts = [str(record.get("type")), normalized(record.get("text"))] + [normalized(fields.get(k)) for k in KNOWN_FIELDS]
    return "\x1f".join(parts)


def drop_exact_duplicates(records: list[dict[str, Any]], rejects: Rejects) -> list[dict[str, Any]]:
    first: dict[str, str] = {}
    kept = []
    for record in records:
        key = exact_key(record)
        if key in first:
            rejects.add_record(record, "exact_dedup", "exact_duplicate", f"exact duplicate of {first[key]}", duplicate_of=first[key])
        else:
            first[key] = record["id"]
            kept.append(record)
    return kept


def content_text(record: dict[str, Any]) -> str:
    """What near-duplicate detection compares: the prompt/answer text, not the machine or hours."""
    if record.get("type") in ("chunk", "episode"):
        return normalized(record.get("text"))
    fields = record.get("fields") or {}
    return " ".join(normalized(fields.get(k)) for k in CONTENT_FIELDS if fields.get(k))


def shingles(text: str, k: int) -> set[int]:
    """CRC-32 of each k-byte shingle: stable across processes (unlike hash()) and far cheaper than SHA-1."""
    data = text.encode("utf-8")
    if len(data) <= k:
        return {zlib.crc32(data)}
    crc = zlib.crc32
    return {crc(data[i:i + k]) for i in range(len(data) - k + 1)}


def signatures(texts: Sequence[str], num_perm: int, k: int) -> list[np.ndarray]:
    """MinHash signatures (uint32), sharing one set of permutations instead of drawing it per text."""
    template = _template(num_perm)
    sketches = MinHash.bulk([shingles(t, k) for t in texts], num_perm=num_perm, hashfunc=int,
                            permutations=template.permutations, scheme=template.scheme)
    return [m.hashvalues for m in sketches]


@functools.lru_cache(maxsize=4)
def _template(num_perm: int) -> MinHash:
    return MinHash(num_perm=num_perm, seed=1)


def near_representatives(
    ids: Sequence[str],
    texts: Sequence[str],
    threshold: float,
    num_perm: int,
    shingle_chars: int,
    progress: Progress,
    known: dict[str, np.ndarray] | None = None,
) -> tuple[list[int], dict[str, np.ndarray]]:
    """For each record, the index of the earlier record it nearly duplicates (itself if none).

    Only representatives enter the LSH index, so its buckets stay small and time grows
    linearly; ``known`` supplies signatures computed by an earlier pass. Returns the
    representatives' signatures, keyed by id, for later passes.
    """
    index = BandIndex(threshold, num_perm)
    reps: list[int] = []
    rep_sigs: dict[int, np.ndarray] = {}
    known = known or {}
    progress.start(len(ids), f"near-duplicates (Jaccard >= {threshold:g})")
    for start in range(0, len(ids), _BATCH):
        progress.check_cancelled()
        batch = range(start, min(start + _BATCH, len(ids)))
        missing = [i for i in batch if ids[i] not in known]
        computed = signatures([texts[i] for i in missing], num_perm, shingle_chars) if missing else []
        sigs = dict(zip(missing, computed, strict=True))
        for i in batch:
            sig = sigs[i] if i in sigs else known[ids[i]]
            keys = index.keys(sig)
            best, best_sim = i, -1.0
            for cand in index.query(keys):
                sim = float(np.count_nonzero(rep_sigs[cand] == sig)) / num_perm
                if sim >= threshold and (sim > best_sim or (sim == best_sim and cand < best)):
                    best, best_sim = cand, sim
            if best == i:
                index.insert(keys, i)
                rep_sigs[i] = sig
            reps.append(best)
        progress.advance(len(batch))
    return reps, {ids[i]: s for i, s in rep_sigs.items()}


class BandIndex:
    """LSH banding over MinHash signatures, insert and query only.

    datasketch's MinHashLSH chooses the bands (b, r) here, but its storage keeps a set per
    bucket and every key's band hashes for removal: about 4 KB per record, 4 GB at a million.
    We never remove, and most buckets hold one record, so a bucket is an int until it
    holds two; every candidate is verified against the threshold anyway.
    """

    def __init__(self, threshold: float, num_perm: int) -> None:
        # Banding a little below the threshold buys recall (about 0.9 at the threshold, not 0.3);
        # the verification step drops the extra candidates.
        try:
            lsh = MinHashLSH(threshold=max(0.1, threshold - 0.1), num_perm=num_perm)
            bands, rows = lsh.b, lsh.r
        except ValueError:  # too few permutations for so high a threshold: two bands still find near-copies
            bands, rows = 2, num_perm // 2
        self.ranges = [(b * rows, (b + 1) * rows) for b in range(bands)]
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]

    def keys(self, sig: np.ndarray) -> list[int]:
        # hash() of the band's bytes: salted per process, but only equality within this run matters.
        return [hash(sig[s:e].tobytes()) for s, e in self.ranges]

    def query(self, keys: list[int]) -> set[int]:
        found: set[int] = set()
        for table, key in zip(self.tables, keys, strict=True):
            hit = table.get(key)
            if hit is None:
                continue
            if isinstance(hit, int):
                found.add(hit)
            else:
                found.update(hit)
        return found

    def insert(self, keys: list[int], item: int) -> None:
        for table, key in zip(self.tables, keys, strict=True):
            hit = table.get(key)
            if hit is None:
                table[key] = item
            elif isinstance(hit, int):
                table[key] = [hit, item]
            else:
                hit.append(item)


def drop_near_duplicates(
    records: list[dict[str, Any]], threshold: float, num_perm: int, shingle_chars: int, rejects: Rejects, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    ids = [r["id"] for r in records]
    reps, sigs = near_representatives(ids, [content_text(r) for r in records], threshold, num_perm, shingle_chars, progress)
    kept = []
    for i, record in enumerate(records):
        if reps[i] == i:
            kept.append(record)
        else:
            rejects.add_record(record, "near_dedup", "near_duplicate",
                               f"near duplicate (Jaccard >= {threshold:g}) of {ids[reps[i]]}", duplicate_of=ids[reps[i]])
    return kept, sigs
