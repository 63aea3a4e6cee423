"""Exact duplicates by normalised content; near duplicates by MinHash LSH over character shingles."""

from __future__ import annotations

import functools
import math
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
GROUP_MISS = 2e-3  # chance that grouping's LSH misses a pair exactly at the threshold


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
    return [np.asarray(m.hashvalues, dtype=np.uint32) for m in sketches]


@functools.lru_cache(maxsize=4)
def _template(num_perm: int) -> MinHash:
    return MinHash(num_perm=num_perm, seed=1)


def pair_margin(threshold: float, num_perm: int) -> float:
    """How far below ``threshold`` a MinHash estimate is still checked against the exact Jaccard.

    The estimate's standard error is sqrt(J(1-J)/num_perm); a pair whose true Jaccard reaches the
    threshold falls more than four of them below it about once in 30,000 times.
    """
    return 4.0 * math.sqrt(threshold * (1.0 - threshold) / num_perm)


# Each set is ~128 bytes a shingle (a 1,500-character chunk: ~190 KB), so few are kept: the
# borderline checks of one record against its neighbours reuse it, a long-lived service stays small.
@functools.lru_cache(maxsize=2048)
def _shingle_set(text: str, k: int) -> set[bytes]:
    """The k-byte shingles themselves, not their CRC-32s (which MinHash samples). Cached: never change it."""
    data = text.encode("utf-8")
    if len(data) <= k:
        return {data}
    return {data[i:i + k] for i in range(len(data) - k + 1)}


def exact_jaccard(a: str, b: str, k: int) -> float:
    """Jaccard similarity of the two texts' shingle sets (what MinHash estimates)."""
    s, t = _shingle_set(a, k), _shingle_set(b, k)
    common = len(s & t)
    return common / (len(s) + len(t) - common)


class PairTest:
    """Whether two records are near duplicates: the MinHash estimate reaches the threshold, or it is
    within ``pair_margin`` below it and the exact Jaccard of the shingle sets reaches it.

    So a true pair at or above the threshold is not lost to the estimate's noise; a pair the estimate
    puts above the threshold counts even if it is a little below (grouping more is safe).
    """

    def __init__(self, texts: Sequence[str], threshold: float, num_perm: int, shingle_chars: int) -> None:
        self.texts, self.threshold, self.num_perm, self.k = texts, threshold, num_perm, shingle_chars
        # Estimates are counts of equal hash values out of num_perm; compare counts, not floats.
        self.need = math.ceil(threshold * num_perm - 1e-9)
        self.low = max(0, math.ceil((threshold - pair_margin(threshold, num_perm)) * num_perm - 1e-9))
        self.exact_checks = 0

    def exact(self, i: int, j: int) -> bool:
        self.exact_checks += 1
        return exact_jaccard(self.texts[i], self.texts[j], self.k) >= self.threshold


def near_representatives(
    ids: Sequence[str],
    texts: Sequence[str],
    threshold: float,
    num_perm: int,
    shingle_chars: int,
    progress: Progress,
    known: dict[str, np.ndarray] | None = None,
) -> tuple[list[int], dict[str, np.ndarray]]:
    """For each record, the index of the earlier kept record it nearly duplicates (itself if none).

    This is what near dedup drops by: a record is dropped when it nearly duplicates an earlier
    record that was kept (the most similar one is named), so the first of a family stays and every
    dropped record is within the threshold of a kept one. Only kept records enter the LSH index,
    so its buckets stay small and time grows linearly; ``known`` supplies signatures computed by
    an earlier pass (``texts`` must still be the real texts: borderline pairs are checked exactly).
    Returns the kept records' signatures, keyed by id, for later passes.
    """
    index = BandIndex(threshold, num_perm)
    test = PairTest(texts, threshold, num_perm, shingle_chars)
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
            best, best_count = i, -1
            border: list[tuple[int, int]] = []
            for cand in index.candidates(keys):
                count = int(np.count_nonzero(rep_sigs[cand] == sig))
                if count >= test.need:
                    if count > best_count or (count == best_count and cand < best):
                        best, best_count = cand, count
                elif count >= test.low:
                    border.append((-count, cand))
            if best == i:
                for _, cand in sorted(border):
                    if test.exact(i, cand):
                        best = cand
                        break
            if best == i:
                index.insert(keys, i)
                rep_sigs[i] = sig
            reps.append(best)
        progress.advance(len(batch))
    return reps, {ids[i]: s for i, s in rep_sigs.items()}


def recall_bands(threshold: float, num_perm: int, miss: float = GROUP_MISS) -> tuple[int, int]:
    """LSH bands (b, r) for grouping: the most rows per band (fewest chance candidates) whose
    chance of missing a pair exactly at ``threshold``, (1 - t^r)^b, is at most ``miss``."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if (1.0 - threshold**rows) ** bands <= miss:
            return bands, rows
    return num_perm, 1


def near_groups(
    ids: Sequence[str],
    texts: Sequence[str],
    threshold: float,
    num_perm: int,
    shingle_chars: int,
    progress: Progress,
    known: dict[str, np.ndarray] | None = None,
    info: dict[str, Any] | None = None,
) -> list[int]:
    """Each record's near-duplicate group: the connected components (union-find) of every LSH
    candidate pair that passes ``PairTest``, labelled by the group's first index.

    Every record takes part (not only the first of a family), so a chain A~B~C is one group even
    where A and C are far apart, and the groups do not depend on the input order: candidate pairs
    are all pairs sharing a band, and whether a pair passes depends only on its two texts. The
    bands are chosen by ``recall_bands`` so that a pair at the threshold is missed at most
    ``GROUP_MISS`` of the time (0.8 with 128 permutations: 21 bands of 6 rows; a pair at 0.85 is
    missed about once in 20,000), and the estimate's noise is covered by ``PairTest``.

    Candidates are found band by band with numpy (sort by band hash, pair the records of each
    bucket; a bucket of more than FULL_BUCKET records is paired along a window, in an order shuffled
    per band, so that templated records cannot make the work quadratic: there the miss bound above
    holds for pairs within reach of the window, and other pairs of such a family usually join
    through chains), so the cost per candidate pair is a fraction of a microsecond. ``info``, when given,
    receives the bands, rows, candidate pairs (one per band shared), close pairs and exact checks.
    """
    n = len(ids)
    if n == 0:
        return []
    bands, rows = recall_bands(threshold, num_perm)
    test = PairTest(texts, threshold, num_perm, shingle_chars)
    known = known or {}
    progress.start(2 * n, f"near-duplicate groups (Jaccard >= {threshold:g})")
    matrix = _signature_matrix(ids, texts, num_perm, shingle_chars, progress, known)
    low_bytes = matrix.astype(np.uint8)  # equal hash values have equal low bytes: a cheap, safe first filter

    multipliers = np.random.default_rng(20240601).integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    edges: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    candidates = 0
    for band in range(bands):
        progress.check_cancelled()
        pairs = _band_pairs(matrix, band * rows, (band + 1) * rows, multipliers)
        candidates += len(pairs)
        if len(pairs):
            close, same = _close_pairs(matrix, low_bytes, pairs, test.low)
            edges.append(close)
            counts.append(same)
        progress.advance(n // bands + (band < n % bands))
    del low_bytes
    if edges:
        pairs, same = np.concatenate(edges), np.concatenate(counts)
        keys = pairs[:, 0].astype(np.int64) * n + pairs[:, 1]
        _, first = np.unique(keys, return_index=True)
        pairs, same = pairs[first], same[first]
    else:
        pairs, same = np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)

    groups = _components(n, pairs, same, test)
    if info is not None:
        info.update(bands=bands, rows=rows, candidate_pairs=candidates, close_pairs=len(pairs), exact_checks=test.exact_checks)
    return groups


def _signature_matrix(ids: Sequence[str], texts: Sequence[str], num_perm: int, shingle_chars: int, progress: Progress,
                      known: dict[str, np.ndarray]) -> np.ndarray:
    """One MinHash signature per record (row), reusing the ``known`` ones by record id."""
    n = len(ids)
    matrix = np.empty((n, num_perm), dtype=np.uint32)
    for start in range(0, n, _BATCH):
        progress.check_cancelled()
        batch = range(start, min(start + _BATCH, n))
        missing = [i for i in batch if ids[i] not in known]
        if missing:
            matrix[missing] = np.stack(signatures([texts[i] for i in missing], num_perm, shingle_chars))
        given = [i for i in batch if ids[i] in known]
        if given:
            matrix[given] = np.stack([known[ids[i]] for i in given])
        progress.advance(len(batch))
    return matrix


def _components(n: int, pairs: np.ndarray, same: np.ndarray, test: PairTest) -> list[int]:
    """Union-find over the pairs that pass ``test``: each record's group, labelled by its first index."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    passing = same >= test.need
    for a, b in pairs[passing].tolist():
        union(a, b)
    # Estimates a little below the threshold: the exact Jaccard decides, unless already joined.
    # The closest first, as they are likeliest to join groups and spare later checks.
    border = np.flatnonzero(~passing)
    border = border[np.argsort(-same[border], kind="stable")]
    for a, b in pairs[border].tolist():
        if find(a) != find(b) and test.exact(a, b):
            union(a, b)
    return [find(i) for i in range(n)]


_PAIR_CHUNK = 65536
# A bucket of at most FULL_BUCKET records is paired completely. A larger one (templated tickets:
# thousands of records that differ in a number) would give k^2/2 pairs, so each record is paired
# with its next BUCKET_WINDOW members only: the pairs that pass still chain the family into one
# group, and the cost stays linear in the records.
FULL_BUCKET = 64
BUCKET_WINDOW = 8


def _band_pairs(matrix: np.ndarray, start: int, end: int, multipliers: np.ndarray) -> np.ndarray:
    """Pairs (i < j) of rows whose hash values ``start:end`` hash alike, as an (m, 2) array: every
    pair of a bucket up to FULL_BUCKET records, each record with its next BUCKET_WINDOW in a larger one."""
    key = np.zeros(len(matrix), dtype=np.uint64)
    for col in range(start, end):  # multilinear hash mod 2**64: a collision only adds a candidate that fails
        key += matrix[:, col].astype(np.uint64) * multipliers[col]
    # Inside a bucket, a per-band shuffle (seeded by the band): a large bucket's window then pairs
    # other neighbours in every band, so a pair far apart in the input is still met in some band.
    shuffle = np.random.default_rng(start).permutation(len(matrix))
    order = np.lexsort((shuffle, key))
    sorted_keys = key[order]
    new = np.empty(len(order), dtype=bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, len(order)))
    if sizes.max(initial=1) < 2:
        return np.empty((0, 2), dtype=np.int64)
    # For each position, how many later positions share its bucket; pair it with each in turn.
    ends = np.repeat(starts + sizes, sizes)
    later = ends - np.arange(len(order)) - 1
    later = np.where(np.repeat(sizes, sizes) <= FULL_BUCKET, later, np.minimum(later, BUCKET_WINDOW))
    active = np.flatnonzero(later > 0)
    out = []
    step = 1
    while active.size:
        out.append(np.stack([order[active], order[active + step]], axis=1))
        active = active[later[active] > step]
        step += 1
    pairs = np.concatenate(out).astype(np.int64)
    pairs.sort(axis=1)
    return pairs


def _close_pairs(matrix: np.ndarray, low_bytes: np.ndarray, pairs: np.ndarray, low: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs with at least ``low`` equal hash values, and their counts (the estimate times num_perm).

    The low bytes agree wherever the hash values do, so counting them first is an upper bound
    that discards most pairs while reading a quarter of the memory; survivors are counted exactly.
    """
    kept, counts = [], []
    for c in range(0, len(pairs), _PAIR_CHUNK):
        chunk = pairs[c:c + _PAIR_CHUNK]
        maybe = chunk[np.count_nonzero(low_bytes[chunk[:, 0]] == low_bytes[chunk[:, 1]], axis=1) >= low]
        same = np.count_nonzero(matrix[maybe[:, 0]] == matrix[maybe[:, 1]], axis=1)
        close = same >= low
        kept.append(maybe[close])
        counts.append(same[close])
    return np.concatenate(kept), np.concatenate(counts)


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

    def candidates(self, keys: list[int], limit: int = 256) -> list[int]:
        """The query's records, at most ``limit`` of them (the earliest): templated records that stay
        apart at the dedup threshold would otherwise make every query scan thousands. A duplicate
        missed this way is only kept; the split's grouping still keeps it beside its family."""
        found = self.query(keys)
        return sorted(found)[:limit] if len(found) > limit else list(found)

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
