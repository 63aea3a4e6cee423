"""The table every tabular reader returns: columns, numbered rows, and the rows it could not read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RowReject:
    row: int
    code: str
    reason: str


@dataclass
class Table:
    """Rows of one file (or one sheet); ``row`` numbers are what a person finds in the file."""

    file: str
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejects: list[RowReject] = field(default_factory=list)
    sheet: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.file}[{self.sheet}]" if self.sheet else self.file

    def row_id(self, row: int) -> str:
        return f"{self.file}:{self.sheet}:{row}" if self.sheet else f"{self.file}:{row}"

    def row_source(self, row: int) -> dict[str, Any]:
        src: dict[str, Any] = {"file": self.file, "row": row}
        if self.sheet:
            src["sheet"] = self.sheet
        return src


def clean_header(names: list[Any]) -> list[str]:
    """Strip names, name blank columns ``column_N``, and make repeated names unique (``Name_2``)."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(names, 1):
        name = "" if raw is None else str(raw).strip()
        name = name or f"column_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 1)
        out.append(name)
    return out


def oversized_cell(values: dict[str, Any], limit: int) -> str | None:
    """A reason naming the first cell longer than ``limit`` characters, or None."""
    for column, value in values.items():
        if isinstance(value, str) and len(value) > limit:
            return f"cell {column!r} has {len(value):,} characters (source.max_cell_chars is {limit:,})"
    return None
