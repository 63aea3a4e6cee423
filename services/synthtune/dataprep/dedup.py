"""Exact duplicates by normalised content; near duplicates (``synthtune.neardup``) over character shingles."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from synthtune.dataprep.rejects import Rejects
from synthtune.neardup import NearDuplicates, char_shingles
from synthtune.progress import Progress
from synthtune.records import KNOWN_FIELDS

CONTENT_FIELDS = ("problem", "cause", "solution")
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


def drop_near_duplicates(
    records: list[dict[str, Any]], threshold: float, num_perm: int, shingle_chars: int, rejects: Rejects, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The records that nearly duplicate no earlier kept record (``NearDuplicates.first_kept``); each
    other one is rejected naming the kept record it is most like. Also the kept records' signatures,
    by id, for the split's grouping."""
    ids = [r["id"] for r in records]
    near = NearDuplicates([content_text(r) for r in records], threshold, num_perm, char_shingles(shingle_chars), progress,
                          f"near-duplicates (Jaccard >= {threshold:g})")
    reps = near.first_kept()
    kept = []
    for i, record in enumerate(records):
        if reps[i] == i:
            kept.append(record)
        else:
            rejects.add_record(record, "near_dedup", "near_duplicate",
                               f"near duplicate (Jaccard >= {threshold:g}) of {ids[reps[i]]}", duplicate_of=ids[reps[i]])
    return kept, {ids[i]: near.matrix[i] for i in range(len(records)) if reps[i] == i}
