"""Field mapping: table rows become prepared records through ``source.fields``."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from synthtune.dataprep.readers.table import Table
from synthtune.dataprep.rejects import Rejects
from synthtune.errors import InvalidInput
from synthtune.spec.source import SourceSpec

_NUMBER = re.compile(r"^\s*[-+]?\d+(?:[.,]\d+)?\s*(?:h|hr|hrs|hours?)?\s*$", re.IGNORECASE)


def find_column(columns: list[str], wanted: str) -> str | None:
    """The column named ``wanted``; failing that, the one equal to it ignoring case and spaces."""
    if wanted in columns:
        return wanted
    key = re.sub(r"\s+", " ", wanted).strip().casefold()
    matches = [c for c in columns if re.sub(r"\s+", " ", c).strip().casefold() == key]
    return matches[0] if len(matches) == 1 else None


def _delimiter_hint(table: Table) -> str:
    if len(table.columns) == 1:
        only = table.columns[0]
        for d, name in ((";", "';'"), ("\t", "tab"), ("|", "'|'"), (",", "','")):
            if d in only and d != table.info.get("delimiter"):
                return f"; the header looks {name}-separated: set source.delimiter to it, or remove source.delimiter to sniff it"
    return ""


def missing_columns(table: Table, source: SourceSpec) -> list[str]:
    """The mapped columns (``source.fields`` and ``source.id_column``) that ``table`` lacks."""
    wanted = list(source.fields.values()) + ([source.id_column] if source.id_column else [])
    return list(dict.fromkeys(c for c in wanted if find_column(table.columns, c) is None))


def reject_unmapped_sheet(table: Table, missing: list[str], rejects: Rejects) -> int:
    """Reject every row of a sheet that lacks mapped columns, naming file, sheet and the columns.

    Reading every sheet of a workbook, a sheet such as "Notes" or a legend is not fatal, but its
    rows still count as input: each is rejected (code ``unmapped_sheet``). Returns how many.
    """
    reason = (f"sheet {table.sheet!r} of {table.file} lacks the mapped column(s) {', '.join(map(repr, missing))} "
              f"(its columns: {', '.join(map(repr, table.columns))}); set source.sheet to read one sheet only")
    rows = sorted([(bad.row, bad.reason) for bad in table.rejects] + [(row_no, "") for row_no, _ in table.rows])
    for row_no, unreadable in rows:
        extra = f"; the row was also unreadable: {unreadable}" if unreadable else ""
        rejects.add(table.row_id(row_no), "read", "unmapped_sheet", f"{table.label}: row {row_no}: {reason}{extra}",
                    source=table.row_source(row_no))
    return len(rows)


def resolve_columns(table: Table, source: SourceSpec) -> dict[str, str]:
    """Field -> actual column; raises InvalidInput listing the columns that do exist."""
    if not source.fields:
        raise InvalidInput(
            f"{table.label}: source.fields maps no columns; map at least `problem` "
            f"(`synthtune prepare --suggest-fields {table.file}` proposes a mapping)",
            [f"columns in {table.label}: {', '.join(repr(c) for c in table.columns)}"],
        )
    wanted = dict(source.fields)
    if source.id_column:
        wanted["(id_column)"] = source.id_column
    resolved: dict[str, str] = {}
    problems = []
    for name, column in wanted.items():
        found = find_column(table.columns, column)
        if found is None:
            close = difflib.get_close_matches(column, table.columns, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"field {name!r} maps to column {column!r}, which {table.label} does not have{hint}")
        else:
            resolved[name] = found
    if problems:
        header_line = table.info.get("header_line")
        where = f"{table.label}:{header_line}" if header_line else table.label
        raise InvalidInput(
            f"{where}: {len(problems)} mapped column(s) missing; the columns are: "
            + ", ".join(repr(c) for c in table.columns) + _delimiter_hint(table),
            problems,
        )
    return resolved


def field_value(name: str, value: Any) -> Any:
    """A cell as a record field: text trimmed, empty as None, hours as a number where it is one."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from Parquet/Excel means an empty cell
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if name == "hours":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if _NUMBER.match(text):
            number = float(re.sub(r"[^\d.,+-]", "", text).replace(",", "."))
            return int(number) if number.is_integer() else number
        return text or None
    text = str(value).strip()
    return text or None


def records_from_table(table: Table, source: SourceSpec, rejects: Rejects) -> list[dict[str, Any]]:
    """Map every row; rows the reader could not read and duplicate ids go to ``rejects``."""
    columns = resolve_columns(table, source)
    for bad in table.rejects:
        rejects.add(table.row_id(bad.row), "read", bad.code, f"{table.label}: {bad.reason}", source=table.row_source(bad.row))
    id_column = columns.pop("(id_column)", None)
    records = []
    seen: dict[str, str] = {}
    for row_no, values in table.rows:
        rid = table.row_id(row_no)
        if id_column:
            own = field_value("id", values.get(id_column))
            if own is None:
                rejects.add(rid, "read", "missing_id", f"{table.label}: row {row_no} has no value in id column {id_column!r}",
                            source=table.row_source(row_no))
                continue
            own = str(own)
            if own in seen:
                rejects.add(rid, "read", "duplicate_id", f"{table.label}: id {own!r} on row {row_no} was already used by {seen[own]}",
                            source=table.row_source(row_no))
                continue
            seen[own] = rid
            rid = own
        fields = {name: field_value(name, values.get(column)) for name, column in columns.items()}
        records.append({"id": rid, "type": "record", "fields": fields, "text": "", "source": table.row_source(row_no)})
    return records
