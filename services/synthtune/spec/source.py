"""The `source` section: where the records are and how their columns map to fields."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from synthtune.spec.base import SpecModel, field

KNOWN_FIELDS = ("problem", "machine", "cause", "solution", "hours")


class EventLogSource(SpecModel):
    timestamp: str = field("timestamp", help="Column holding the event time (ISO 8601 or epoch seconds).")
    signal: str = field("signal", help="Column naming the signal or actuator.")
    value: str = field("value", help="Column holding the signal's value.")
    command: str | None = field("command", help="Column holding the controller command, if logged.")
    gap_s: float = field(300.0, help="A new episode starts after this many seconds without events.", gt=0)
    window_s: float | None = field(None, help="Cut episodes to at most this many seconds (optional).", gt=0)
    timestamp_format: str | None = field(
        None, help="strptime format of the timestamp column (e.g. '%d/%m/%Y %H:%M:%S') when it is neither ISO 8601 nor epoch seconds."
    )
    machine: str | None = field(None, help="Column naming the machine; episodes are formed per machine across all files.")


class SourceSpec(SpecModel):
    paths: list[str] = field(
        help="Input files or globs, relative to the pipeline file (CSV, TSV, XLSX, JSONL, Parquet, PDF, TXT, MD).",
        min_length=1,
    )
    fields: dict[str, str] = field(
        default_factory=dict,
        help="Record field -> column name. Known fields: problem, machine, cause, solution, hours; "
        "other names travel with the record as extras.",
    )
    kind: Literal["auto", "records", "documents", "event_log"] = field(
        "auto", help="How to read the files: tabular records, documents (PDF/MD/TXT), or machine event logs."
    )
    sheet: str | None = field(None, help="Excel sheet to read; every sheet when unset.")
    encoding: str | None = field(None, help="Text encoding; detected (UTF-8, cp1252, latin-1, ...) when unset.")
    delimiter: str | None = field(None, help="CSV delimiter; sniffed when unset.")
    id_column: str | None = field(None, help="Column holding a stable record id; file:row is used when unset.")
    event_log: EventLogSource | None = field(None, help="Column names and episode rules for machine event logs.")
    max_cell_chars: int = field(
        100_000, help="Longest cell kept; a row with a larger cell goes to rejects (guards against runaway quoting).", ge=1
    )
    max_rows: int = field(1_000_000, help="Most rows read from one file or sheet; a larger one is refused with a clear error.", ge=1)
    max_file_mb: float = field(
        1024.0, help="Largest file read, in MB, counted uncompressed for .xlsx (zip) and Parquet; a larger one is refused.", gt=0
    )
    strict: bool = field(
        False, help="Stop the whole prepare at the first unreadable file; by default such a file goes to rejects with its reason "
        "and the run goes on (it fails only when no file is readable)."
    )

    @field_validator("fields")
    @classmethod
    def _non_empty_columns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, column in value.items():
            if not str(column).strip():
                raise ValueError(f"field {name!r} maps to an empty column name")
        return value
