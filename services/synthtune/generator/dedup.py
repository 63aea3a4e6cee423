"""Exact duplicates (normalised question + answer) and near duplicates among questions (``synthtune.neardup``)."""

from __future__ import annotations

from collections.abc import Sequence

from synthtune.generator.text import words
from synthtune.neardup import NearDuplicates, jaccard
from synthtune.progress import Progress

NUM_PERM = 128
Duplicate = tuple[str, float, str]  # reason, similarity, id of the kept twin


def question_shingles(text: str) -> list[bytes]:
    tokens = words(text)
    # Unigrams and bigrams: questions are short, so word-trigram shingles would rarely match.
    return [t.encode() for t in tokens] + [f"{a} {b}".encode() for a, b in zip(tokens, tokens[1:], strict=False)]


def find_duplicates(examples: Sequence[tuple[str, str, str]], near: float | bool) -> list[Duplicate | None]:
    """For each (id, question, answer) in order, a ``duplicate`` (same question and answer words as a
    kept example) or ``near_duplicate`` (its question nearly duplicates a kept one's), else None:
    the first of a group is kept, and every duplicate names a kept example."""
    keys = [" ".join(words(q)) + "\n" + " ".join(words(a)) for _, q, a in examples]
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    unique = [i for i, key in enumerate(keys) if first[key] == i]
    worded = [i for i in unique if words(examples[i][1])]
    twin: dict[int, int] = {}  # near-dropped example -> the kept one it is most like
    if near is not False and worded:
        # Questions are short: the exact Jaccard decides every pair, so a score never falls below the threshold.
        found = NearDuplicates([examples[i][1] for i in worded], float(near), NUM_PERM, question_shingles, Progress(),
                               "near-duplicate questions", exact=True).first_kept()
        twin = {worded[k]: worded[r] for k, r in enumerate(found) if r != k}
    out: list[Duplicate | None] = []
    for i, (_, question, _) in enumerate(examples):
        original = first[keys[i]]
        if original in twin:  # its question is near a kept one's: what the original was dropped for
            kept = examples[twin[original]]
            out.append(("near_duplicate", round(jaccard(question, kept[1], question_shingles), 3), kept[0]))
        elif original != i:
            out.append(("duplicate", 1.0, examples[original][0]))
        else:
            out.append(None)
    return out
