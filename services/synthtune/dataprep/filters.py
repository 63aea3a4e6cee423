"""Record filters: incomplete records and length outliers (IQR fences or explicit bounds)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from synthtune.dataprep.rejects import Rejects
from synthtune.records import combined_length
from synthtune.spec.prepare import OutlierSpec

MIN_FOR_IQR = 8  # quartiles of fewer lengths say little about what is unusual


def missing_fields(record: dict[str, Any], required: list[str]) -> list[str]:
    if record.get("type") != "record":
        return [] if (record.get("text") or "").strip() else ["text"]
    fields = record.get("fields") or {}
    return [name for name in required if fields.get(name) is None or str(fields[name]).strip() == ""]


def drop_incomplete(records: list[dict[str, Any]], required: list[str], rejects: Rejects) -> list[dict[str, Any]]:
    kept = []
    for record in records:
        missing = missing_fields(record, required)
        if missing:
            rejects.add_record(record, "incomplete", "incomplete", f"missing required field(s): {', '.join(missing)}")
        else:
            kept.append(record)
    return kept


def length_fences(lengths: list[int], spec: OutlierSpec) -> tuple[float, float] | None:
    """(low, high) kept lengths, or None when the rule does not apply."""
    if spec.method == "bounds":
        return (float(spec.min_chars or 0), float(spec.max_chars) if spec.max_chars else float("inf"))
    if spec.method == "iqr" and len(lengths) >= MIN_FOR_IQR:
        q1, q3 = np.percentile(lengths, [25, 75])
        iqr = q3 - q1
        return (float(q1 - spec.iqr_factor * iqr), float(q3 + spec.iqr_factor * iqr))
    return None


def drop_length_outliers(records: list[dict[str, Any]], spec: OutlierSpec, rejects: Rejects) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fences are computed per record type: a manual chunk and a ticket have different normal lengths."""
    by_type: dict[str, list[int]] = defaultdict(list)
    lengths = [combined_length(r) for r in records]
    for record, length in zip(records, lengths, strict=True):
        by_type[record.get("type", "record")].append(length)
    fences = {t: length_fences(v, spec) for t, v in by_type.items()}
    rule = "explicit bounds" if spec.method == "bounds" else f"IQR rule, factor {spec.iqr_factor:g}"
    kept = []
    for record, length in zip(records, lengths, strict=True):
        fence = fences[record.get("type", "record")]
        if fence is not None and length < fence[0]:
            rejects.add_record(record, "outliers", "too_short", f"combined length {length} chars is below {fence[0]:.0f} ({rule})")
        elif fence is not None and length > fence[1]:
            rejects.add_record(record, "outliers", "too_long", f"combined length {length} chars is above {fence[1]:.0f} ({rule})")
        else:
            kept.append(record)
    # JSON has no infinity: an open bound is written as null.
    return kept, {t: None if f is None else [f[0], None if math.isinf(f[1]) else f[1]] for t, f in fences.items()}
