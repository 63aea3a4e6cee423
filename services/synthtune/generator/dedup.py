"""Exact duplicates (normalised question + answer) and near duplicates among questions (MinHash LSH)."""

from __future__ import annotations

from datasketch import MinHash, MinHashLSH

from synthtune.generator.text import words

NUM_PERM = 128


def _shingles(text: str) -> set[str]:
    tokens = words(text)
    # Unigrams and bigrams: questions are short, so word-trigram shingles would rarely match.
    return set(tokens) | {f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)}


def _minhash(text: str) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1)
    for shingle in _shingles(text):
        m.update(shingle.encode("utf-8"))
    return m


class Deduplicator:
    """Feed examples in order; the first of a group is kept, later ones are reported."""

    def __init__(self, near: float | bool) -> None:
        self.exact: dict[str, str] = {}
        self.near = float(near) if near not in (False, None) else None
        self.lsh = MinHashLSH(threshold=self.near, num_perm=NUM_PERM) if self.near else None
        self.hashes: dict[str, MinHash] = {}

    def check(self, example_id: str, question: str, answer: str) -> tuple[str, float, str] | None:
        """(reason, similarity, id of the kept twin) for a duplicate, else None (and remember it)."""
        key = " ".join(words(question)) + "\n" + " ".join(words(answer))
        if key in self.exact:
            return "duplicate", 1.0, self.exact[key]
        m = None
        if self.lsh is not None and self.near is not None and words(question):
            m = _minhash(question)
            for other in self.lsh.query(m):
                similarity = m.jaccard(self.hashes[other])
                if similarity >= self.near:
                    return "near_duplicate", round(similarity, 3), other
        self.exact[key] = example_id
        if m is not None and self.lsh is not None:
            self.lsh.insert(example_id, m)
            self.hashes[example_id] = m
        return None
