"""Rejected records: every dropped record becomes a ``rejects.jsonl`` line with its id and reason."""

from __future__ import annotations

from collections import Counter
from typing import Any

from synthtune.records import KNOWN_FIELDS

PREVIEW_CHARS = 200


def preview(record: dict[str, Any]) -> str:
    """A short look at what was dropped, so a reviewer need not open the source file."""
    if record.get("text"):
        text = str(record["text"])
    else:
        fields = record.get("fields") or {}
        text = " | ".join(f"{k}: {fields[k]}" for k in KNOWN_FIELDS if fields.get(k) not in (None, ""))
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


class Rejects:
    """Collects reject lines: ``{"id", "reason", "step", "code", ...}``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rid: str, step: str, code: str, reason: str, **extra: Any) -> None:
        self.rows.append({"id": rid, "reason": reason, "step": step, "code": code, **extra})

    def add_record(self, record: dict[str, Any], step: str, code: str, reason: str, **extra: Any) -> None:
        self.add(record["id"], step, code, reason, source=record.get("source"), preview=preview(record), **extra)

    def by_step(self) -> dict[str, int]:
        return dict(Counter(r["step"] for r in self.rows))

    def by_code(self) -> dict[str, int]:
        return dict(Counter(r["code"] for r in self.rows))
