"""Tabular formats other than CSV: Excel, JSON Lines, JSON arrays, Parquet and MaintNorm ``.norm``."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path
from typing import Any

from synthtune.dataprep.readers.decode import read_text
from synthtune.dataprep.readers.limits import check_rows, check_zip
from synthtune.dataprep.readers.table import RowReject, Table, clean_header, oversized_cell
from synthtune.errors import InvalidInput
from synthtune.spec.source import SourceSpec


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def read_xlsx(path: Path, label: str, source: SourceSpec) -> list[Table]:
    """One table per sheet (or only ``source.sheet``); the header is each sheet's first non-empty row."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    check_zip(path, label, source)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        raise InvalidInput(f"{label}: not a readable .xlsx workbook ({exc})") from None
    try:
        names = book.sheetnames
        if source.sheet is not None and source.sheet not in names:
            raise InvalidInput(f"{label}: no sheet named {source.sheet!r} (sheets: {', '.join(names)})")
        tables = []
        for name in [source.sheet] if source.sheet else names:
            table = _read_sheet(book[name], label, name, source)
            if table is not None:
                tables.append(table)
        return tables
    finally:
        book.close()


def _read_sheet(sheet: Any, label: str, name: str, source: SourceSpec) -> Table | None:
    table: Table | None = None
    max_cell = source.max_cell_chars
    for row_no, raw in enumerate(sheet.iter_rows(values_only=True), 1):
        check_rows(row_no - 1, f"{label}[{name}]", source)  # stop while streaming, before the rows pile up
        cells = [_cell(v) for v in raw]
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in cells):
            continue
        if table is None:
            table = Table(file=label, columns=clean_header(cells), sheet=name, info={"header_line": row_no})
            continue
        n = len(table.columns)
        values = dict(zip(table.columns, (cells + [None] * n)[:n], strict=True))
        if any(v not in (None, "") for v in cells[n:]):
            table.rejects.append(RowReject(row_no, "bad_row", f"row {row_no} has values right of the last named column"))
            continue
        too_big = oversized_cell(values, max_cell)
        if too_big:
            table.rejects.append(RowReject(row_no, "cell_too_large", f"row {row_no}: {too_big}"))
            continue
        table.rows.append((row_no, values))
    return table


def _table_from_objects(label: str, items: list[tuple[int, Any]], what: str, max_cell: int) -> Table:
    columns: dict[str, None] = {}
    table = Table(file=label, columns=[])
    for row_no, obj in items:
        if not isinstance(obj, dict):
            table.rejects.append(RowReject(row_no, "bad_row", f"{what} {row_no} is a JSON {type(obj).__name__}, not an object"))
            continue
        values = {str(k): v for k, v in obj.items()}
        too_big = oversized_cell(values, max_cell)
        if too_big:
            table.rejects.append(RowReject(row_no, "cell_too_large", f"{what} {row_no}: {too_big}"))
            continue
        columns.update(dict.fromkeys(values))
        table.rows.append((row_no, values))
    table.columns = list(columns)
    return table


def read_jsonl(path: Path, label: str, source: SourceSpec) -> Table:
    decoded = read_text(path, label, source.encoding, what="JSON Lines text")
    items: list[tuple[int, Any]] = []
    bad: list[RowReject] = []
    for line_no, line in enumerate(decoded.text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((line_no, json.loads(line)))
        except json.JSONDecodeError as exc:
            bad.append(RowReject(line_no, "bad_json", f"line {line_no} column {exc.colno}: not valid JSON ({exc.msg})"))
    table = _table_from_objects(label, items, "line", source.max_cell_chars)
    table.rejects = bad + table.rejects
    table.info["encoding"] = decoded.encoding
    return table


def read_json(path: Path, label: str, source: SourceSpec) -> Table:
    """A JSON array of objects, or an object holding exactly one such array (``{"data": [...]}``)."""
    decoded = read_text(path, label, source.encoding, what="JSON text")
    try:
        data = json.loads(decoded.text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{label}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    key = None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise InvalidInput(f"{label}: expected a JSON array of objects, or an object with exactly one array in it")
        key = lists[0]
        data = data[key]
    if not isinstance(data, list):
        raise InvalidInput(f"{label}: expected a JSON array of objects, found a JSON {type(data).__name__}")
    table = _table_from_objects(label, list(enumerate(data, 1)), "item", source.max_cell_chars)
    table.info.update(encoding=decoded.encoding, array_key=key)
    return table


def read_parquet(path: Path, label: str, source: SourceSpec) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        check_rows(meta.num_rows, label, source)
        expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if expanded > source.max_file_mb * 1024 * 1024:
            raise InvalidInput(f"{label}: expands to {expanded / 1024 / 1024:,.1f} MB, more than source.max_file_mb ({source.max_file_mb:g} MB)")
        items: list[tuple[int, Any]] = []
        for batch in pf.iter_batches(batch_size=65536):
            start = len(items) + 1
            items.extend(enumerate(batch.to_pylist(), start))
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{label}: not a readable Parquet file ({exc})") from None
    table = _table_from_objects(label, [(n, {k: _cell(v) for k, v in obj.items()}) for n, obj in items], "row", source.max_cell_chars)
    table.columns = list(pf.schema_arrow.names)
    return table


def read_norm(path: Path, label: str, source: SourceSpec) -> Table:
    """MaintNorm ``.norm``: one ``raw<TAB>normalised`` token per line, a blank line between texts."""
    decoded = read_text(path, label, source.encoding, what="MaintNorm text")
    table = Table(file=label, columns=["raw", "normalised"], info={"encoding": decoded.encoding})
    raw: list[str] = []
    norm: list[str] = []
    start = 0

    def flush() -> None:
        if raw:
            table.rows.append((start, {"raw": " ".join(raw), "normalised": " ".join(t for t in norm if t)}))
        raw.clear()
        norm.clear()

    for line_no, line in enumerate(decoded.text.splitlines(), 1):
        if not line.strip():
            flush()
            continue
        if not raw:
            start = line_no
        token, _, normalised = line.partition("\t")
        raw.append(token.strip())
        norm.append(normalised.strip())
    flush()
    return table
