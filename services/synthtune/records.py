"""The prepared-record shape shared by every stage, and the prompt/reference built from it.

A prepared record (one line of ``train/validation/test.jsonl``)::

    {"id": "work_orders.csv:12",           # stable, traceable to file and row/page
     "type": "record" | "chunk" | "episode",
     "fields": {"problem": ..., "machine": ..., "cause": ..., "solution": ..., "hours": ..., <extras>},
     "text": "...",                        # chunk text, or the rendered episode; "" for records
     "events": [...],                      # episodes only: {"t", "signal", "value", "command"}
     "source": {"file": "work_orders.csv", "row": 12} | {"file": "manual.pdf", "page": 3}}

Evaluation asks every model the same question built from a held-out record, and scores its
answer against the record's own solution, so the prompt/reference rules live here, once.
"""

from __future__ import annotations

from typing import Any

KNOWN_FIELDS = ("problem", "machine", "cause", "solution", "hours")


def field_text(record: dict[str, Any], name: str) -> str:
    value = (record.get("fields") or {}).get(name)
    return "" if value is None else str(value).strip()


def question_for_record(record: dict[str, Any]) -> str:
    """The technician's question for a held-out record (what evaluation asks every model)."""
    if record.get("type") == "chunk":
        return f"Using the manual excerpt below, summarise the key maintenance instructions.\n\n{record.get('text', '')}"
    if record.get("type") == "episode":
        return f"The line controller reports the following events. What should happen next?\n\n{record.get('text', '')}"
    machine = field_text(record, "machine")
    problem = field_text(record, "problem")
    if machine:
        return f"On the {machine}: {problem}. What is the likely cause and how do I fix it?"
    return f"{problem}. What is the likely cause and how do I fix it?"


def reference_for_record(record: dict[str, Any]) -> str:
    """The reference answer a model's reply is scored against."""
    if record.get("type") in ("chunk", "episode"):
        return str(record.get("reference") or record.get("text") or "")
    parts = []
    cause = field_text(record, "cause")
    solution = field_text(record, "solution")
    hours = field_text(record, "hours")
    if cause:
        parts.append(f"Cause: {cause}.")
    if solution:
        parts.append(f"Fix: {solution}.")
    if hours:
        parts.append(f"Expected time: {hours} h.")
    return " ".join(parts)


def combined_length(record: dict[str, Any]) -> int:
    """Characters of prompt plus answer: what the split stratifies on."""
    if record.get("type") in ("chunk", "episode"):
        return len(record.get("text") or "")
    return sum(len(field_text(record, f)) for f in KNOWN_FIELDS)
