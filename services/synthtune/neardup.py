"""Near duplicates by MinHash LSH: the one engine behind prepare's dedup and split grouping and generate's dedup.

Texts become shingle sets (``char_shingles`` for tickets; the generator passes word n-grams), each
set a MinHash signature (datasketch, one shared set of permutations). Candidate pairs share an LSH
band, found band by band with numpy; a candidate is a near duplicate when ``PairTest`` says so.
``NearDuplicates`` finds those pairs once and reads them two ways: ``first_kept`` (dedup: keep the
first of a family in input order) and ``groups`` (the split: connected components).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from datasketch import MinHash

from synthtune.progress import Progress

Shingler = Callable[[str], Iterable[bytes]]
GROUP_MISS = 2e-3  # chance that the bands miss a pair exactly at the threshold
_BATCH = 4096
_PAIR_CHUNK = 65536
# A bucket of at most FULL_BUCKET records is paired completely. A larger one (templated tickets:
# thousands of records that differ in a number) would give k^2/2 pairs, so each record is paired
# with its next BUCKET_WINDOW members in a per-band shuffled order and with the bucket's first
# LEADERS records in input order (where dedup's kept records are): the pairs that pass still chain
# the family into one group, dedup still finds the family's first record, and the cost stays linear.
FULL_BUCKET = 64
BUCKET_WINDOW = 8
LEADERS = 8


@functools.cache
def char_shingles(k: int) -> Shingler:
    """The k-byte shingles of a text's UTF-8 (the whole text when shorter); one function per k, so caches hit."""

    def shingles(text: str) -> Iterable[bytes]:
        data = text.encode("utf-8")
        if len(data) <= k:
            return (data,)
        return (data[i:i + k] for i in range(len(data) - k + 1))

    return shingles


def signatures(texts: Sequence[str], num_perm: int, shingler: Shingler) -> np.ndarray:
    """MinHash signatures (uint32, one row a text) over the CRC-32 of each shingle: stable across
    processes (unlike hash()) and far cheaper than SHA-1; one set of permutations for all texts."""
    if not texts:
        return np.empty((0, num_perm), dtype=np.uint32)
    template = _template(num_perm)
    crc = zlib.crc32
    sketches = MinHash.bulk([{crc(s) for s in shingler(t)} for t in texts], num_perm=num_perm, hashfunc=int,
                            permutations=template.permutations, scheme=template.scheme)
    return np.stack([m.hashvalues for m in sketches]).astype(np.uint32)


@functools.lru_cache(maxsize=4)
def _template(num_perm: int) -> MinHash:
    return MinHash(num_perm=num_perm, seed=1)


# Each set is ~128 bytes a shingle (a 1,500-character chunk: ~190 KB), so few are kept: the
# borderline checks of one record against its neighbours reuse it, a long-lived service stays small.
@functools.lru_cache(maxsize=2048)
def _shingle_set(text: str, shingler: Shingler) -> frozenset[bytes]:
    return frozenset(shingler(text))


def jaccard(a: str, b: str, shingler: Shingler) -> float:
    """Jaccard similarity of the two texts' shingle sets (what MinHash estimates)."""
    s, t = _shingle_set(a, shingler), _shingle_set(b, shingler)
    common = len(s & t)
    union = len(s) + len(t) - common
    return common / union if union else 1.0


def pair_margin(threshold: float, num_perm: int) -> float:
    """How far below ``threshold`` a MinHash estimate is still checked against the exact Jaccard.

    The estimate's standard error is sqrt(J(1-J)/num_perm); a pair whose true Jaccard reaches the
    threshold falls more than four of them below it about once in 30,000 times.
    """
    return 4.0 * math.sqrt(threshold * (1.0 - threshold) / num_perm)


def recall_bands(threshold: float, num_perm: int, miss: float = GROUP_MISS) -> tuple[int, int]:
    """LSH bands (b, r): the most rows per band (fewest chance candidates) whose chance of
    missing a pair exactly at ``threshold``, (1 - t^r)^b, is at most ``miss``."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if (1.0 - threshold**rows) ** bands <= miss:
            return bands, rows
    return num_perm, 1


class PairTest:
    """Whether two records are near duplicates: the MinHash estimate reaches the threshold, or it is
    within ``pair_margin`` below it and the exact Jaccard of the shingle sets reaches it.

    So a true pair at or above the threshold is not lost to the estimate's noise; a pair the estimate
    puts above the threshold counts even if it is a little below (grouping more is safe). With
    ``exact``, the exact Jaccard decides every pair within the margin (cheap for short texts).
    """

    def __init__(self, texts: Sequence[str], threshold: float, num_perm: int, shingler: Shingler, exact: bool = False) -> None:
        self.texts, self.threshold, self.shingler = texts, threshold, shingler
        # Estimates are counts of equal hash values out of num_perm; compare counts, not floats.
        self.need = num_perm + 1 if exact else math.ceil(threshold * num_perm - 1e-9)
        self.low = max(0, math.ceil((threshold - pair_margin(threshold, num_perm)) * num_perm - 1e-9))
        self.exact_checks = 0
        # Checking every pair meets each text many times: keep every set (short texts), not the last 2,048.
        self._sets = [frozenset(shingler(t)) for t in texts] if exact else None

    def exact(self, i: int, j: int) -> bool:
        self.exact_checks += 1
        if self._sets is None:
            return jaccard(self.texts[i], self.texts[j], self.shingler) >= self.threshold
        s, t = self._sets[i], self._sets[j]
        common = len(s & t)
        return common >= self.threshold * (len(s) + len(t) - common)


class NearDuplicates:
    """The near-duplicate pairs among ``texts`` at Jaccard ``threshold``.

    Bands come from ``recall_bands``: a pair at the threshold is missed at most ``GROUP_MISS`` of
    the time (0.8 with 128 permutations: 21 bands of 6 rows; a pair at 0.85 is missed about once
    in 20,000), and the estimate's noise is covered by ``PairTest``. Candidates are found band by
    band with numpy (sort by band hash, pair the records of each bucket, see FULL_BUCKET), so the
    cost per candidate pair is a fraction of a microsecond and the work stays linear. Whether a
    pair passes depends only on its two texts. ``known`` supplies signatures of an earlier pass by
    record id (``texts`` must still be the real texts: borderline pairs are checked exactly);
    ``exact`` has the exact Jaccard decide every pair (see ``PairTest``).
    """

    def __init__(self, texts: Sequence[str], threshold: float, num_perm: int, shingler: Shingler, progress: Progress,
                 label: str, ids: Sequence[str] = (), known: dict[str, np.ndarray] | None = None, exact: bool = False) -> None:
        n = len(texts)
        self.test = PairTest(texts, threshold, num_perm, shingler, exact)
        self.bands, self.rows = recall_bands(threshold, num_perm)
        progress.start(2 * n, label)
        self.matrix = _signature_matrix(texts, num_perm, shingler, progress, ids, known or {})
        self.pairs, self.same, self.candidates = _find_pairs(self.matrix, self.bands, self.rows, self.test.low, progress)

    @property
    def info(self) -> dict[str, Any]:
        """Bands, rows, candidate pairs (one per band shared), close pairs and exact checks so far."""
        return {"bands": self.bands, "rows": self.rows, "candidate_pairs": self.candidates,
                "close_pairs": len(self.pairs), "exact_checks": self.test.exact_checks}

    def first_kept(self) -> list[int]:
        """For each record, the index of the earlier kept record it nearly duplicates (itself if none).

        A record is dropped when it nearly duplicates an earlier record that was kept (the most
        similar one is named), so the first of a family stays and every dropped record is within
        the threshold of a kept one: in a chain A~B~C where A and C are not near, B alone goes.
        """
        n = len(self.matrix)
        reps = list(range(n))
        # Each record's pairs with earlier ones, most similar first (ties: the earliest).
        order = np.lexsort((self.pairs[:, 0], -self.same, self.pairs[:, 1]))
        dropped = [False] * n
        need, test = self.test.need, self.test
        for (i, j), count in zip(self.pairs[order].tolist(), self.same[order].tolist(), strict=True):
            if dropped[j] or dropped[i]:
                continue
            if count >= need or test.exact(i, j):
                reps[j], dropped[j] = i, True
        return reps

    def groups(self) -> list[int]:
        """Each record's group: the connected components of the pairs that pass, labelled by the
        group's first index; a chain A~B~C is one group even where A and C are far apart."""
        n = len(self.matrix)
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

        passing = self.same >= self.test.need
        for a, b in self.pairs[passing].tolist():
            union(a, b)
        # Estimates a little below the threshold: the exact Jaccard decides, unless already joined.
        # The closest first, as they are likeliest to join groups and spare later checks.
        border = np.flatnonzero(~passing)
        border = border[np.argsort(-self.same[border], kind="stable")]
        for a, b in self.pairs[border].tolist():
            if find(a) != find(b) and self.test.exact(a, b):
                union(a, b)
        return [find(i) for i in range(n)]


def _signature_matrix(texts: Sequence[str], num_perm: int, shingler: Shingler, progress: Progress,
                      ids: Sequence[str], known: dict[str, np.ndarray]) -> np.ndarray:
    """One MinHash signature per record (row), reusing the ``known`` ones by record id."""
    n = len(texts)
    matrix = np.empty((n, num_perm), dtype=np.uint32)
    for start in range(0, n, _BATCH):
        progress.check_cancelled()
        batch = range(start, min(start + _BATCH, n))
        given = [i for i in batch if known and ids[i] in known]
        missing = sorted(set(batch).difference(given))
        if missing:
            matrix[missing] = signatures([texts[i] for i in missing], num_perm, shingler)
        if given:
            matrix[given] = np.stack([known[ids[i]] for i in given])
        progress.advance(len(batch))
    return matrix


def _find_pairs(matrix: np.ndarray, bands: int, rows: int, low: int, progress: Progress) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct candidate pairs (i < j) with at least ``low`` equal hash values, their counts,
    and how many candidate pairs the bands gave."""
    n = len(matrix)
    low_bytes = matrix.astype(np.uint8)  # equal hash values have equal low bytes: a cheap, safe first filter
    multipliers = np.asarray(np.random.default_rng(20240601).integers(1, 2**63, size=matrix.shape[1], dtype=np.uint64)) | np.uint64(1)
    edges: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    candidates = 0
    for band in range(bands):
        progress.check_cancelled()
        pairs = _band_pairs(matrix, band * rows, (band + 1) * rows, multipliers)
        candidates += len(pairs)
        if len(pairs):
            close, same = _close_pairs(matrix, low_bytes, pairs, low)
            edges.append(close)
            counts.append(same)
        progress.advance(n // bands + (band < n % bands))
    if not edges:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64), candidates
    pairs, same = np.concatenate(edges), np.concatenate(counts)
    _, first = np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1], return_index=True)
    return pairs[first], same[first], candidates


def _band_pairs(matrix: np.ndarray, start: int, end: int, multipliers: np.ndarray) -> np.ndarray:
    """Pairs (i < j) of rows whose hash values ``start:end`` hash alike, as an (m, 2) array: every
    pair of a bucket up to FULL_BUCKET records; in a larger one, each record with its next
    BUCKET_WINDOW and with the bucket's first LEADERS records."""
    if len(matrix) < 2:
        return np.empty((0, 2), dtype=np.int64)
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
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    later = np.repeat(sizes, sizes) - rank - 1
    big = np.repeat(sizes > FULL_BUCKET, sizes)
    later = np.where(big, np.minimum(later, BUCKET_WINDOW), later)
    active = np.flatnonzero(later > 0)
    out = []
    step = 1
    while active.size:
        out.append(np.stack([order[active], order[active + step]], axis=1))
        active = active[later[active] > step]
        step += 1
    if big.any():
        by_input = np.lexsort((np.arange(len(matrix)), key))  # the same buckets, each in input order
        for lead in range(LEADERS):
            at = np.flatnonzero(big & (rank > lead))
            out.append(np.stack([by_input[at - rank[at] + lead], by_input[at]], axis=1))
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
