"""Readers: every supported file type to raw rows, each traceable to file and row or page."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput

TABULAR = {".csv", ".tsv", ".txt_table", ".xlsx", ".xlsm", ".jsonl", ".ndjson", ".json", ".parquet"}
DOCUMENTS = {".pdf", ".md", ".markdown", ".txt"}
MAX_CELL_CHARS = 1_000_000  # a cell this big is an export error, not a ticket


@dataclass
class RawRow:
    """A source row before mapping: its location and its columns."""

    file: str
    row: int  # 1-based data row (header is row 0), or page for documents
    values: dict[str, Any]
    reject: str | None = None  # set when the row is unreadable; it goes to rejects


@dataclass
class Table:
    file: str
    columns: list[str]
    rows: list[RawRow] = field(default_factory=list)


def decode_bytes(data: bytes, name: str, encoding: str | None = None) -> str:
    """Text from bytes: the given encoding, else UTF-8, else the best detected one; binary refused."""
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidInput(f"{name}: looks like binary data, not text (NUL bytes in the first 8 KB)")
    if encoding:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidInput(f"{name}: cannot decode as {encoding}: {exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:2_000_000]).best()
    if best is None or best.encoding is None:
        raise InvalidInput(f"{name}: cannot detect the text encoding; set source.encoding")
    enc = best.encoding
    if enc.replace("_", "").lower() in ("ascii", "utf8"):
        enc = "cp1252"
    try:
        return data.decode(enc)
    except UnicodeDecodeError:
        return data.decode("latin-1")  # every byte sequence decodes; nothing is lost


def _sniff_delimiter(sample: str, name: str, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_delimited(path: Path, encoding: str | None, delimiter: str | None) -> Table:
    name = path.name
    data = path.read_bytes()
    if not data.strip():
        raise InvalidInput(f"{name}: the file is empty")
    text = decode_bytes(data, name, encoding)
    sample = text[:20000]
    delim = delimiter or _sniff_delimiter(sample, name, path.suffix.lower())
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput(f"{name}: the file is empty") from None
    except csv.Error as exc:
        raise InvalidInput(f"{name}:1: cannot parse the header: {exc}") from None
    columns = [h.strip() or f"column_{i + 1}" for i, h in enumerate(header)]
    if len(columns) == 1 and len(sample.splitlines()) > 1 and any(d in sample for d in ";\t|"):
        raise InvalidInput(
            f"{name}:1: only one column found with delimiter {delim!r}; set source.delimiter (the file seems to use another)"
        )
    table = Table(name, columns)
    total_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    while True:
        started = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            reason = f"broken quoting from line {started}: lines {started}-{total_lines} could not be split into cells ({exc})"
            table.rows.append(RawRow(name, started, {}, reject=reason))
            break
        if not any(c.strip() for c in cells):
            continue
        ended = reader.line_num
        row = RawRow(name, started, {})
        if len(cells) < len(columns) and any("\n" in c for c in cells):
            row.reject = f"broken quoting from line {started}: lines {started}-{ended} were read as one cell (unbalanced quote)"
        elif len(cells) > len(columns):
            row.reject = f"line {started} has {len(cells)} cells but the header has {len(columns)} (broken quoting or wrong delimiter?)"
        elif any(len(c) > MAX_CELL_CHARS for c in cells):
            row.reject = f"line {started} has a cell over {MAX_CELL_CHARS:,} characters"
        else:
            row.values = dict(zip(columns, cells, strict=False))
        table.rows.append(row)
    return table


def read_excel(path: Path, sheet: str | None) -> list[Table]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise InvalidInput(f"{path.name}: not a readable .xlsx workbook ({exc})") from None
    names = [sheet] if sheet else wb.sheetnames
    missing = [n for n in names if n not in wb.sheetnames]
    if missing:
        raise InvalidInput(f"{path.name}: no sheet {missing[0]!r}; sheets: {', '.join(wb.sheetnames)}")
    tables = []
    for sheet_name in names:
        rows = wb[sheet_name].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            continue
        columns = [str(h).strip() if h is not None else f"column_{i + 1}" for i, h in enumerate(header)]
        label = f"{path.name}[{sheet_name}]" if len(names) > 1 or sheet else path.name
        table = Table(label, columns)
        for i, cells in enumerate(rows, start=2):
            if cells is None or all(c is None or str(c).strip() == "" for c in cells):
                continue
            table.rows.append(RawRow(label, i, {c: ("" if v is None else v) for c, v in zip(columns, cells, strict=False)}))
        tables.append(table)
    return tables


def read_jsonl(path: Path, encoding: str | None) -> Table:
    text = decode_bytes(path.read_bytes(), path.name, encoding)
    table = Table(path.name, [])
    seen: dict[str, None] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            table.rows.append(RawRow(path.name, line_no, {}, reject=f"line {line_no} is not valid JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            table.rows.append(RawRow(path.name, line_no, {}, reject=f"line {line_no} is not a JSON object"))
            continue
        seen.update(dict.fromkeys(obj))
        table.rows.append(RawRow(path.name, line_no, obj))
    table.columns = list(seen)
    if not table.rows:
        raise InvalidInput(f"{path.name}: the file is empty")
    return table


def read_json_array(path: Path, encoding: str | None) -> Table:
    try:
        data = json.loads(decode_bytes(path.read_bytes(), path.name, encoding))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path.name}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"{path.name}: expected a JSON array of objects")
    table = Table(path.name, [])
    seen: dict[str, None] = {}
    for i, obj in enumerate(data, 1):
        if isinstance(obj, dict):
            flat = {k: v for k, v in obj.items() if isinstance(v, str | int | float) or v is None}
            seen.update(dict.fromkeys(flat))
            table.rows.append(RawRow(path.name, i, flat))
        else:
            table.rows.append(RawRow(path.name, i, {}, reject=f"item {i} is not a JSON object"))
    table.columns = list(seen)
    return table


def read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise InvalidInput(f"{path.name}: not a readable Parquet file ({exc})") from None
    table = Table(path.name, list(pf.schema_arrow.names))
    row_no = 0
    for batch in pf.iter_batches(batch_size=10_000):
        for obj in batch.to_pylist():
            row_no += 1
            table.rows.append(RawRow(path.name, row_no, obj))
    return table


def read_norm(path: Path, encoding: str | None) -> Table:
    """MaintNorm-style token files: one `raw<TAB>normalised` token per line, blank line between texts."""
    text = decode_bytes(path.read_bytes(), path.name, encoding)
    table = Table(path.name, ["raw_text", "normalised_text"])
    raw: list[str] = []
    norm: list[str] = []
    start = 1
    for line_no, line in enumerate([*text.splitlines(), ""], 1):
        if not line.strip():
            if raw:
                table.rows.append(RawRow(path.name, start, {"raw_text": " ".join(raw), "normalised_text": " ".join(norm)}))
            raw, norm, start = [], [], line_no + 1
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            table.rows.append(RawRow(path.name, line_no, {}, reject=f"line {line_no}: expected 'raw<TAB>normalised'"))
            continue
        raw.append(parts[0])
        norm.append(parts[1])
    return table


def read_tables(path: Path, encoding: str | None, delimiter: str | None, sheet: str | None) -> list[Table]:
    """Tabular rows from one file, dispatching on its suffix."""
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name}: the file is empty")
    if suffix in (".xlsx", ".xlsm"):
        return read_excel(path, sheet)
    if suffix in (".jsonl", ".ndjson"):
        return [read_jsonl(path, encoding)]
    if suffix == ".json":
        return [read_json_array(path, encoding)]
    if suffix == ".parquet":
        return [read_parquet(path)]
    if suffix == ".norm":
        return [read_norm(path, encoding)]
    return [read_delimited(path, encoding, delimiter)]


def iter_rows(tables: list[Table]) -> Iterator[RawRow]:
    for table in tables:
        yield from table.rows
