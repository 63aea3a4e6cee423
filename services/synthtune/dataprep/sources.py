"""Source files to prepared-record dicts (see synthtune.records), plus rejects for unreadable rows."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.dataprep.documents import read_document
from synthtune.dataprep.eventlog import episodes_from_rows
from synthtune.dataprep.readers import DOCUMENTS, Table, read_tables
from synthtune.errors import InvalidInput
from synthtune.spec.pipeline import PipelineSpec
from synthtune.spec.source import EventLogSource


@dataclass
class Loaded:
    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    input_units: int = 0  # rows, chunks and log events read: always kept + rejected
    files: list[Path] = field(default_factory=list)


def resolve_paths(spec: PipelineSpec) -> list[Path]:
    base = Path(spec.base_dir or ".")
    found: list[Path] = []
    for pattern in spec.source.paths:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(Path(p) for p in glob.glob(full, recursive=True)) if any(c in pattern for c in "*?[") else [Path(full)]
        existing = [p for p in matches if p.is_file()]
        if not existing:
            raise InvalidInput(f"source.paths: {pattern!r} matches no file (looked in {base.resolve()})")
        found.extend(existing)
    return found


def _kind_of(path: Path, spec: PipelineSpec) -> str:
    if spec.source.kind != "auto":
        return spec.source.kind
    if path.suffix.lower() in DOCUMENTS and path.suffix.lower() != ".txt" or path.suffix.lower() == ".pdf":
        return "documents"
    if path.suffix.lower() == ".txt" and not spec.source.fields:
        return "documents"
    if spec.source.event_log is not None:
        return "event_log"
    return "records"


def _map_table(table: Table, spec: PipelineSpec, out: Loaded) -> None:
    mapping = spec.source.fields
    if not mapping:
        raise InvalidInput(
            f"{table.file}: source.fields is empty; map record fields to columns "
            f"(try `synthtune prepare --suggest-fields {table.file}`); columns: {', '.join(table.columns)}"
        )
    missing = {f: c for f, c in mapping.items() if c not in table.columns}
    if missing:
        names = ", ".join(f"{f} -> {c!r}" for f, c in missing.items())
        raise InvalidInput(f"{table.file}: mapped column(s) not found: {names}; the file has: {', '.join(table.columns)}")
    id_col = spec.source.id_column
    if id_col and id_col not in table.columns:
        raise InvalidInput(f"{table.file}: id_column {id_col!r} not found; the file has: {', '.join(table.columns)}")
    for row in table.rows:
        out.input_units += 1
        rid = f"{row.file}:{row.row}"
        if row.reject:
            out.rejects.append({"id": rid, "reason": row.reject, "source": {"file": row.file, "row": row.row}})
            continue
        if id_col and str(row.values.get(id_col, "")).strip():
            rid = f"{row.file}:{str(row.values[id_col]).strip()}"
        fields = {f: ("" if row.values.get(c) is None else str(row.values.get(c)).strip()) for f, c in mapping.items()}
        out.records.append({"id": rid, "type": "record", "fields": fields, "text": "", "source": {"file": row.file, "row": row.row}})


def load_sources(spec: PipelineSpec) -> Loaded:
    out = Loaded()
    out.files = resolve_paths(spec)
    src = spec.source
    for path in out.files:
        kind = _kind_of(path, spec)
        if kind == "documents":
            for chunk in read_document(path, spec.prepare.chunk_chars, spec.prepare.chunk_overlap, src.encoding):
                out.input_units += 1
                source: dict[str, Any] = {"file": chunk.file}
                if chunk.page is not None:
                    source["page"] = chunk.page
                out.records.append({"id": chunk.id, "type": "chunk", "fields": {}, "text": chunk.text, "source": source})
            continue
        tables = read_tables(path, src.encoding, src.delimiter, src.sheet)
        if kind == "event_log":
            cfg = src.event_log or EventLogSource()
            for table in tables:
                episodes, rejects = episodes_from_rows(table.rows, cfg, table.columns, table.file)
                out.input_units += len(table.rows)
                out.rejects.extend(rejects)
                for ep in episodes:
                    out.records.append({
                        "id": ep.id, "type": "episode", "fields": {}, "text": ep.render(), "events": ep.events,
                        "source": {"file": ep.file, "row": ep.first_row},
                    })
            continue
        for table in tables:
            _map_table(table, spec, out)
    return out


def units_of(record: dict[str, Any]) -> int:
    """How many input units a prepared record stands for (an episode holds several log events)."""
    return len(record.get("events") or []) if record.get("type") == "episode" else 1
