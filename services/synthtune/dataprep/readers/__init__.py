"""Readers: resolve ``source.paths``, read every file by its kind, and return prepared-shaped records."""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.dataprep.readers.csvfile import read_csv
from synthtune.dataprep.readers.documents import read_pdf, read_plain
from synthtune.dataprep.readers.events import (
    Event,
    episode_record,
    events_from_table,
    group_episodes,
    looks_like_event_log,
)
from synthtune.dataprep.readers.formats import read_json, read_jsonl, read_norm, read_parquet, read_xlsx
from synthtune.dataprep.readers.limits import UnreadableFile, check_file_size, check_rows, unreadable
from synthtune.dataprep.readers.mapping import missing_columns, records_from_table, reject_unmapped_sheet
from synthtune.dataprep.readers.table import Table
from synthtune.dataprep.rejects import Rejects
from synthtune.errors import InvalidInput
from synthtune.progress import Progress
from synthtune.spec.prepare import PrepareSpec
from synthtune.spec.source import EventLogSource, SourceSpec
from synthtune.store.fetch import cached_copy, expand, is_uri

TableReader = Callable[[Path, str, SourceSpec], Table]
TABLE_READERS: dict[str, TableReader] = {
    ".csv": read_csv, ".tsv": read_csv, ".tab": read_csv,
    ".jsonl": read_jsonl, ".ndjson": read_jsonl, ".json": read_json,
    ".parquet": read_parquet, ".pq": read_parquet, ".norm": read_norm,
}
EXCEL = (".xlsx", ".xlsm")
DOCUMENTS = (".pdf", ".txt", ".md", ".markdown")
SUPPORTED = tuple(TABLE_READERS) + EXCEL + DOCUMENTS


@dataclass(frozen=True)
class SourceFile:
    path: Path
    label: str  # the path as records name it: relative to the pipeline's folder where possible


@dataclass
class ReadResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)


def _label(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def resolve_files(source: SourceSpec, base_dir: str | None) -> list[SourceFile]:
    """Every input file, in a stable order: paths, globs and folders resolve against ``base_dir``;
    ``s3://`` objects, prefixes and globs are copied to the local cache and keep their URI as label."""
    base = Path(base_dir or ".").resolve()
    found: dict[Path, str | None] = {}
    for entry in source.paths:
        if is_uri(entry):
            for path, uri in _remote_files(entry):
                found.setdefault(path, uri)
            continue
        pattern = Path(entry).expanduser()
        pattern = pattern if pattern.is_absolute() else base / pattern
        if glob.has_magic(str(pattern)):
            hits = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
            if not hits:
                raise InvalidInput(f"source.paths: {entry!r} matches no files (looked in {base})")
        elif pattern.is_dir():
            hits = sorted(p for p in pattern.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED)
            if not hits:
                raise InvalidInput(f"source.paths: folder {entry!r} holds no readable files ({', '.join(SUPPORTED)})")
        elif pattern.is_file():
            hits = [pattern]
        else:
            raise InvalidInput(f"source.paths: {entry!r} does not exist (looked for {pattern})")
        for hit in hits:
            found.setdefault(hit.resolve(), None)
    files = [SourceFile(p, label or _label(p, base)) for p, label in found.items()]
    for f in files:
        if f.path.suffix.lower() not in SUPPORTED:
            raise InvalidInput(f"{f.label}: unsupported file type {f.path.suffix or '(none)'!r}; readable: {', '.join(SUPPORTED)}")
    return files


def _remote_files(uri: str) -> list[tuple[Path, str]]:
    """(local copy, URI) of every object an ``s3://`` entry names; a folder keeps only readable files."""
    objects = expand(uri, "source.paths")
    folder = not glob.has_magic(uri) and [o.uri for o in objects] != [uri]
    if folder:
        objects = [o for o in objects if Path(o.key).suffix.lower() in SUPPORTED]
        if not objects:
            raise InvalidInput(f"source.paths: folder {uri!r} holds no readable files ({', '.join(SUPPORTED)})")
    return [(cached_copy(o), o.uri) for o in objects]


def read_tables(f: SourceFile, source: SourceSpec) -> list[Table]:
    """The tables of one tabular file (one per Excel sheet), each within source.max_rows."""
    suffix = f.path.suffix.lower()
    if suffix in EXCEL:
        tables = read_xlsx(f.path, f.label, source)
        if not tables:
            raise InvalidInput(f"{f.label}: every sheet is empty")
        return tables
    table = TABLE_READERS[suffix](f.path, f.label, source)
    check_rows(len(table.rows) + len(table.rejects), f.label, source)
    return [table]


def _file_kind(f: SourceFile, source: SourceSpec) -> str:
    suffix = f.path.suffix.lower()
    document = suffix in DOCUMENTS
    if source.kind == "documents" and not document:
        raise InvalidInput(f"{f.label}: source.kind is 'documents' but this is a table; readable documents: {', '.join(DOCUMENTS)}")
    if source.kind in ("records", "event_log") and document:
        raise InvalidInput(f"{f.label}: source.kind is {source.kind!r} but this is a document (PDF/TXT/MD)")
    if document:
        return "documents"
    if source.kind == "event_log" or (source.kind == "auto" and source.event_log is not None):
        return "event_log"
    return "records"


def _tabular_records(f: SourceFile, source: SourceSpec, rejects: Rejects, info: dict[str, Any],
                     tables: list[Table] | None = None) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    tables = tables if tables is not None else read_tables(f, source)
    # Reading every sheet of a workbook, a sheet without the mapped columns (notes, a legend) is
    # not fatal: its rows are rejected with the reason. With no sheet that has them, the mapping is wrong.
    every_sheet = source.sheet is None and len(tables) > 1 and all(t.sheet is not None for t in tables)
    unmapped: dict[int, list[str]] = {}
    if every_sheet and source.fields:
        unmapped = {i: missing for i, t in enumerate(tables) if (missing := missing_columns(t, source))}
        if len(unmapped) == len(tables):
            unmapped = {}  # let the first sheet's error name the columns
    skipped = []
    for i, table in enumerate(tables):
        if i in unmapped:
            rejected = reject_unmapped_sheet(table, unmapped[i], rejects)
            skipped.append({"sheet": table.sheet, "missing_columns": unmapped[i], "columns": table.columns,
                            "rows_rejected": rejected})
        else:
            records.extend(records_from_table(table, source, rejects))
    info.update(tables[0].info, rows=sum(len(t.rows) for t in tables), unreadable_rows=sum(len(t.rejects) for t in tables))
    if len(tables) > 1 or tables[0].sheet:
        info["sheets"] = [t.sheet for i, t in enumerate(tables) if i not in unmapped]
    if skipped:
        info["skipped_sheets"] = skipped
    return records


def _read_file(f: SourceFile, source: SourceSpec, prepare: PrepareSpec, rejects: Rejects, events: list[Event],
               progress: Progress) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records (or, for event logs, the events appended to ``events``) and info of one file."""
    kind = _file_kind(f, source)
    unreadable(check_file_size, f.path, f.label, source)
    info: dict[str, Any] = {"file": f.label, "kind": kind}
    log_spec = source.event_log or EventLogSource()
    if kind == "documents" and f.path.suffix.lower() == ".pdf":
        records, more = unreadable(read_pdf, f.path, f.label, prepare.chunk_chars, prepare.chunk_overlap, rejects)
        info.update(more)
    elif kind == "documents":
        records, more = unreadable(read_plain, f.path, f.label, source.encoding, prepare.chunk_chars, prepare.chunk_overlap)
        info.update(more)
    elif kind == "event_log":
        tables = unreadable(read_tables, f, source)
        # With source.kind auto, a table without the event columns holds records (work orders
        # beside the line's event log), read with the field mapping.
        if source.kind == "auto" and not any(looks_like_event_log(t, log_spec) for t in tables):
            info["kind"] = "records"
            records = _tabular_records(f, source, rejects, info, tables)
        else:
            records = []  # episodes are formed once every file is read: they may span files
            before = len(events)
            for table in tables:
                events.extend(events_from_table(table, log_spec, rejects, len(events)))
                info.update(table.info)
            info["events"] = len(events) - before
    else:
        records = _tabular_records(f, source, rejects, info, unreadable(read_tables, f, source))
        for sheet in info.get("skipped_sheets", []):
            progress.note(f"{f.label}: sheet {sheet['sheet']!r} lacks {', '.join(map(repr, sheet['missing_columns']))}; "
                          f"its {sheet['rows_rejected']} row(s) are rejected")
    info["records"] = len(records)
    return records, info


def read_sources(source: SourceSpec, prepare: PrepareSpec, base_dir: str | None, rejects: Rejects,
                 progress: Progress) -> ReadResult:
    """Read every file; unreadable rows/pages go to ``rejects`` and count as input.

    A file that cannot be read at all (corrupt, empty, over a limit) is one reject (id: the file)
    with the reason, and the other files are still read; with ``source.strict`` its error stops the
    whole read instead. Mapping mistakes (a wrong column, kind or sheet) stop it either way.
    """
    files = resolve_files(source, base_dir)
    result = ReadResult()
    events: list[Event] = []
    failures: list[UnreadableFile] = []
    progress.start(len(files), "reading")
    for f in files:
        progress.check_cancelled()
        rejected_before, events_before = len(rejects.rows), len(events)
        try:
            records, info = _read_file(f, source, prepare, rejects, events, progress)
        except UnreadableFile as exc:
            if source.strict or len(failures) + 1 == len(files) == 1:
                raise
            failures.append(exc)
            del rejects.rows[rejected_before:], events[events_before:]  # the file counts once, as one reject
            reason = str(exc) if str(exc).startswith(f.label) else f"{f.label}: {exc}"
            rejects.add(f.label, "read", "unreadable_file", reason, source={"file": f.label})
            progress.note(f"skipping {reason}")
            records, info = [], {"file": f.label, "kind": "unreadable", "records": 0, "error": reason}
        result.records.extend(records)
        result.files.append(info)
        progress.advance()
    if len(failures) == len(files):
        raise InvalidInput(f"none of the {len(files)} files could be read", [str(e) for e in failures[:10]])
    if events:
        result.records.extend(episode_record(ep) for ep in group_episodes(events, source.event_log or EventLogSource()))
    result.records = _unique_ids(result.records, rejects)
    return result


def _unique_ids(records: list[dict[str, Any]], rejects: Rejects) -> list[dict[str, Any]]:
    """Ids key the split and the rejects, so a repeated id (``source.id_column`` across files) is rejected."""
    seen: set[str] = set()
    kept = []
    for record in records:
        if record["id"] in seen:
            src = record.get("source") or {}
            where = ":".join(str(src[k]) for k in ("file", "sheet", "row") if src.get(k) is not None)
            rejects.add(where, "read", "duplicate_id", f"{where}: id {record['id']!r} is used by an earlier record", source=src)
            continue
        seen.add(record["id"])
        kept.append(record)
    return kept
