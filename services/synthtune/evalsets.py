"""User-provided evaluation sets (``evaluate.sets``): read, checked, and shaped like held-out records.

A set is a CSV, XLSX or JSONL file with a question and a reference column (``fields: {question: COL,
reference: COL}``), or chat JSONL lines: ``{"messages": [...], "reference": TEXT}`` or
``{"messages": [...], "expected_call": {"name": ..., "arguments": {...}}, "tools": [...]}``. Every
item becomes a ``records.EvalItem``, so a set is asked and scored exactly as the test split is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.records import EPISODE_SYSTEM, EvalItem, command_name, command_tool
from synthtune.spec.evaluate import EvalSetSpec
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store.fetch import cached_copy, expand, is_uri


def set_file(s: EvalSetSpec, base_dir: str | None) -> tuple[Path, str]:
    """(local file, the name errors use): an ``s3://`` set is copied from the store where the stage runs."""
    if is_uri(s.path):
        objects = expand(s.path, f"evaluate.sets[{s.name}]")
        if len(objects) != 1 or objects[0].uri != s.path.rstrip("/"):
            raise InvalidInput(f"evaluate.sets[{s.name}]: {s.path!r} names {len(objects)} objects; a set is one file")
        return cached_copy(objects[0]), s.path
    path = Path(s.path)
    path = path if path.is_absolute() or base_dir is None else Path(base_dir) / path
    return path, str(path)


def _table_rows(path: Path, label: str, sheet: str | None) -> list[tuple[int, dict[str, Any]]]:
    """(line or row number, row) for a CSV or XLSX file; the header is line/row 1."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        if sheet is not None and sheet not in book.sheetnames:
            raise InvalidInput(f"{label}: no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)})")
        rows = list((book[sheet] if sheet else book.worksheets[0]).iter_rows(values_only=True))
        book.close()
        if not rows:
            return []
        header = ["" if h is None else str(h).strip() for h in rows[0]]
        return [(i, dict(zip(header, r, strict=False))) for i, r in enumerate(rows[1:], start=2)]
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        return [(reader.line_num, dict(r)) for r in reader]


def _jsonl_rows(path: Path, label: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(f"{label}:{n}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise InvalidInput(f"{label}:{n}: a line must be a JSON object")
        rows.append((n, row))
    return rows


def _chat_item(label: str, n: int, row: dict[str, Any], system: str, name: str) -> EvalItem:
    messages = row["messages"]
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user" and str(m.get("content") or "").strip()]
    if not users:
        raise InvalidInput(f"{label}:{n}: messages have no user turn with content")
    own_system = next((str(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "system"), None)
    question = str(users[-1]["content"]).strip()
    if row.get("expected_call") is not None:
        call = row["expected_call"]
        if not isinstance(call, dict) or not str(call.get("name") or "").strip():
            raise InvalidInput(f"{label}:{n}: expected_call needs a name ({{name, arguments}})")
        expected = {"name": command_name(call["name"]), "arguments": call.get("arguments") if isinstance(call.get("arguments"), dict) else None}
        tools = row.get("tools") or [command_tool(expected["name"])]
        return EvalItem(f"{name}:{n}", "function_call", own_system or EPISODE_SYSTEM, question, expected["name"], tools, expected)
    reference = str(row.get("reference") or "").strip()
    if not reference:
        raise InvalidInput(f"{label}:{n}: a chat line needs a reference text or an expected_call")
    return EvalItem(f"{name}:{n}", "reference", own_system or system, question, reference)


def load_set(s: EvalSetSpec, base_dir: str | None, system: str) -> list[EvalItem]:
    """The set's items; bad input (exit 2) names the file, the line and what is wrong."""
    suffix = Path(s.path).suffix.lower()
    if suffix not in (".csv", ".xlsx", ".xlsm", ".jsonl"):
        raise InvalidInput(f"evaluate.sets[{s.name}]: {s.path}: use a .csv, .xlsx or .jsonl file")
    path, label = set_file(s, base_dir)
    if not path.is_file():
        raise InvalidInput(f"evaluate.sets[{s.name}]: {label} does not exist")
    rows = _jsonl_rows(path, label) if suffix == ".jsonl" else _table_rows(path, label, s.sheet)
    items: list[EvalItem] = []
    for n, row in rows:
        if "messages" in row and s.fields is None:
            items.append(_chat_item(label, n, row, system, s.name))
            continue
        fields = s.fields or {"question": "question", "reference": "reference"}
        for role in ("question", "reference"):
            if fields[role] not in row:
                raise InvalidInput(f"{label}: no column {fields[role]!r} (the set's {role}; columns: {', '.join(map(str, row))})")
        question, reference = (str(row[fields[r]] or "").strip() for r in ("question", "reference"))
        if not question or not reference:
            raise InvalidInput(f"{label}:{n}: empty {'question' if not question else 'reference'} in column "
                               f"{fields['question' if not question else 'reference']!r}")
        items.append(EvalItem(f"{s.name}:{n}", "reference", system, question, reference))
    if not items:
        raise InvalidInput(f"evaluate.sets[{s.name}]: {label} has no items (an empty set would score a silent zero)")
    return items


def set_records(items: list[EvalItem]) -> list[dict[str, Any]]:
    """A set's items as records for the training-data decontamination (question and reference are its content)."""
    return [{"id": it.id, "type": "record", "eval_set": it.id.rsplit(":", 1)[0], "fields": {"problem": it.question, "solution": it.reference}} for it in items]


def load_sets(spec: PipelineSpec) -> dict[str, list[EvalItem]]:
    """Every evaluate.sets entry, by name."""
    return {s.name: load_set(s, spec.base_dir, spec.generate.system_prompt) for s in spec.evaluate.sets}


def decontamination_records(spec: PipelineSpec) -> list[dict[str, Any]]:
    """Every set's items as records, for decontaminating training data against them."""
    return [r for items in load_sets(spec).values() for r in set_records(items)]
