"""Statistics of a prepared dataset: counts, completeness, lengths, top machines and failure modes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from synthtune.dataprep.dedup import normalized
from synthtune.records import KNOWN_FIELDS, combined_length

FAILURE_MODE_FIELDS = ("failure_mode", "failure", "fm")
TOP_N = 10


def field_completeness(records: list[dict[str, Any]]) -> dict[str, float]:
    """Share of records (of type ``record``) with a non-empty value, per field."""
    rows = [r.get("fields") or {} for r in records if r.get("type") == "record"]
    if not rows:
        return {}
    names = list(dict.fromkeys(n for row in rows for n in row))
    return {n: round(sum(1 for row in rows if row.get(n) not in (None, "")) / len(rows), 4) for n in names}


def length_summary(lengths: list[int]) -> dict[str, float | int]:
    if not lengths:
        return {"count": 0}
    q1, median, q3 = np.percentile(lengths, [25, 50, 75])
    return {
        "count": len(lengths), "min": int(min(lengths)), "q1": float(q1), "median": float(median),
        "mean": round(float(np.mean(lengths)), 2), "q3": float(q3), "max": int(max(lengths)),
    }


def top_values(records: list[dict[str, Any]], name: str, n: int = TOP_N) -> list[list[Any]]:
    counts = Counter(str(v) for r in records if (v := (r.get("fields") or {}).get(name)) not in (None, ""))
    return [[value, count] for value, count in counts.most_common(n)]


def top_failure_modes(records: list[dict[str, Any]]) -> dict[str, Any]:
    """From a failure-mode field where one is mapped, else the commonest problem descriptions."""
    for name in FAILURE_MODE_FIELDS:
        values = top_values(records, name)
        if values:
            return {"from": f"field {name!r}", "top": values}
    counts = Counter(normalized(v) for r in records if (v := (r.get("fields") or {}).get("problem")))
    return {"from": "problem text", "top": [[v, c] for v, c in counts.most_common(TOP_N)]}


def _words(record: dict[str, Any]) -> int:
    fields = record.get("fields") or {}
    return len(str(record.get("text") or "").split()) + sum(len(str(fields.get(k) or "").split()) for k in KNOWN_FIELDS)


def dataset_stats(splits: dict[str, list[dict[str, Any]]], input_completeness: dict[str, float] | None = None) -> dict[str, Any]:
    """Statistics of the kept records; ``input_completeness`` is ``field_completeness`` of the records as read.

    Completeness is reported twice: ``input`` shows how complete the source is (before cleaning,
    dedup and dropping incomplete records, so a required field can be below 1.0) and ``kept`` what
    the prepared dataset holds (required fields are 1.0 there by construction).
    """
    kept = [r for rows in splits.values() for r in rows]
    return {
        "splits": {name: len(rows) for name, rows in splits.items()},
        "types": dict(Counter(r.get("type", "record") for r in kept)),
        "field_completeness": {"input": input_completeness or {}, "kept": field_completeness(kept)},
        "length": {"all": length_summary([combined_length(r) for r in kept]),
                   **{name: length_summary([combined_length(r) for r in rows]) for name, rows in splits.items()}},
        "words": sum(_words(r) for r in kept),
        "top_machines": top_values(kept, "machine"),
        "top_failure_modes": top_failure_modes(kept),
    }
