"""Propose a source.fields mapping from a file's headers and sample values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from synthtune.dataprep.readers import read_tables

# Header words that point to each field, strongest first.
HINTS: dict[str, list[str]] = {
    "problem": ["problem", "shorttext", "short text", "symptom", "title", "description", "issue", "complaint", "fault", "failure mode", "text"],
    "machine": ["machine", "asset", "equipment", "machinetype", "machine type", "unit", "system", "subsystem", "component"],
    "cause": ["cause", "condition found", "condition", "root cause", "fm", "failure", "finding"],
    "solution": ["solution", "action", "work performed", "workperformed", "repair", "remedy", "resolution", "recommended action", "fix"],
    "hours": ["hours", "duration", "labour", "labor", "time", "runningtime", "running time"],
}


def _norm(text: str) -> str:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).lower()
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", spaced).split())


def _numeric_share(values: list[Any]) -> float:
    vals = [str(v).strip() for v in values if str(v).strip()]
    if not vals:
        return 0.0
    return sum(1 for v in vals if re.fullmatch(r"-?\d+(?:[.,]\d+)?", v)) / len(vals)


def suggest_fields(path: str | Path, sample: int = 200) -> dict[str, str]:
    """field -> column; numeric columns only map to hours, text columns to the others."""
    tables = read_tables(Path(path), None, None, None)
    table = tables[0]
    rows = [r.values for r in table.rows[:sample] if not r.reject]
    scores: list[tuple[float, str, str]] = []
    for column in table.columns:
        name = _norm(column)
        values = [row.get(column, "") for row in rows]
        numeric = _numeric_share(values) > 0.8
        avg_len = sum(len(str(v)) for v in values) / max(1, len(values))
        for field, words in HINTS.items():
            if (field == "hours") != numeric:
                continue
            for rank, word in enumerate(words):
                if word == name or (len(word) > 3 and word in name):
                    score = 100 - rank * 5 + (10 if word == name else 0) + min(avg_len, 60) / 10
                    scores.append((score, field, column))
                    break
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for _score, field, column in sorted(scores, reverse=True):
        if field not in mapping and column not in used:
            mapping[field] = column
            used.add(column)
    return {f: mapping[f] for f in HINTS if f in mapping}
