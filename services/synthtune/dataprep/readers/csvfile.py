"""CSV and TSV: encoding detection, delimiter sniffing, row-level rejects with line numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from synthtune.dataprep.readers.decode import read_text
from synthtune.dataprep.readers.table import RowReject, Table, clean_header, oversized_cell
from synthtune.errors import InvalidInput
from synthtune.spec.source import SourceSpec

# The stdlib default (128 KiB) raises mid-file; cells are limited by source.max_cell_chars instead,
# which turns a runaway cell into a reject rather than an exception.
csv.field_size_limit(2**31 - 1)

DELIMITERS = ",;\t|"
_SNIFF_CHARS = 64 * 1024


def sniff_delimiter(text: str, default: str = ",") -> str:
    """The delimiter of ``text``: csv.Sniffer on whole lines, else the commonest candidate in the header."""
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        first = sample.split("\n", 1)[0]
        counts = {d: first.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else default


def read_csv(path: Path, label: str, source: SourceSpec) -> Table:
    decoded = read_text(path, label, source.encoding, what="CSV text")
    text = decoded.text
    default = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    delimiter = source.delimiter or sniff_delimiter(text, default)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    table: Table | None = None
    last_line = 0
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            end = reader.line_num
            if "unexpected end of data" in str(exc):
                raise InvalidInput(
                    f"{label}:{start}: a quoted cell opened on this line is never closed "
                    f"(the file ends inside it at line {end}); fix the quote character"
                ) from None
            if table is None:
                raise InvalidInput(f"{label}:{start}: the header row has broken quoting ({exc})") from None
            table.rejects.append(RowReject(start, "bad_quoting", f"broken quoting on {_lines(start, end)}: {exc}"))
            last_line = end
            continue
        end = reader.line_num
        last_line = end
        if not row:
            continue  # a blank line is not a record
        if table is None:
            table = Table(file=label, columns=clean_header(row))
            table.info.update(encoding=decoded.encoding, delimiter=delimiter, header_line=start)
            continue
        _add_row(table, row, start, end, delimiter, source.max_cell_chars)
    if table is None:
        raise InvalidInput(f"{label}: the file has no header row and no data")
    return table


def _lines(start: int, end: int) -> str:
    return f"line {start}" if start == end else f"lines {start}-{end}"


def _add_row(table: Table, row: list[str], start: int, end: int, delimiter: str, max_cell: int) -> None:
    n = len(table.columns)
    if len(row) > n:
        extra = row[n:]
        if any(cell.strip() for cell in extra):
            table.rejects.append(RowReject(
                start, "bad_row",
                f"row on {_lines(start, end)} has {len(row)} cells but the header has {n} "
                f"(an unquoted {delimiter!r} inside a cell, or the wrong delimiter?)",
            ))
            return
        row = row[:n]  # trailing empty cells, as spreadsheets often export
    values = dict(zip(table.columns, row + [""] * (n - len(row)), strict=True))
    too_big = oversized_cell(values, max_cell)
    if too_big:
        table.rejects.append(RowReject(start, "cell_too_large", f"row on {_lines(start, end)}: {too_big}"))
        return
    table.rows.append((start, values))
