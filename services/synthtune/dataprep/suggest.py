"""Propose ``source.fields`` for a file from its column names and sample values."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.dataprep.readers import SUPPORTED, SourceFile, read_tables
from synthtune.dataprep.readers.table import Table
from synthtune.errors import InvalidInput
from synthtune.spec.source import SourceSpec

SAMPLE_ROWS = 500

# (field, header pattern, weight): a strong name match weighs 3, a loose one 2.
_HEADER_RULES: list[tuple[str, str, int]] = [
    ("problem", r"short ?text|problem|symptom|fault|complaint|issue|defect|failure ?mode|description|\bdesc\b|title|subject|notification|^text$", 3),
    ("solution", r"solution|work ?(done|performed)|repair|remed|\bfix|resolution|corrective|recommended ?action|^action$", 3),
    ("solution", r"action|activity|measure", 2),
    ("cause", r"cause|root|reason", 3),
    ("machine", r"asset|machine|equipment|equip\b|vehicle|fleet|\bunit\b|model", 3),
    ("machine", r"sub ?system|system|component|plant|device", 2),
    ("hours", r"\bhours?\b|\bhrs\b|duration|labou?r|man ?hours|time ?spent|work ?time", 3),
    ("failure_mode", r"failure ?mode|^fm$", 3),
]
_FIELD_ORDER = ("problem", "solution", "cause", "machine", "hours", "failure_mode")


@dataclass
class ColumnProfile:
    name: str
    filled: float
    mean_chars: float
    mean_words: float
    numeric: float
    distinct: float
    samples: list[str]


def _profile(table: Table, column: str) -> ColumnProfile:
    values = [v for _, row in table.rows[:SAMPLE_ROWS] if (v := row.get(column)) not in (None, "")]
    texts = [str(v).strip() for v in values]
    n = max(len(texts), 1)
    numeric = sum(1 for t in texts if re.fullmatch(r"[-+]?\d+([.,]\d+)?", t)) / n
    return ColumnProfile(
        name=column,
        filled=len(texts) / max(len(table.rows[:SAMPLE_ROWS]), 1),
        mean_chars=sum(map(len, texts)) / n,
        mean_words=sum(len(t.split()) for t in texts) / n,
        numeric=numeric,
        distinct=len(set(texts)) / n,
        samples=texts[:3],
    )


def _fits(field: str, p: ColumnProfile) -> bool:
    """Whether the sample values look like the field: free text, a short label, or a number."""
    if p.filled == 0:
        return False
    if field in ("problem", "cause"):
        return p.numeric < 0.5 and p.mean_chars >= 6
    if field == "solution":
        return p.numeric < 0.5
    if field in ("machine", "failure_mode"):
        return p.numeric < 0.9 and p.mean_chars <= 60
    if field == "hours":
        return p.numeric >= 0.8
    return True


def _load(path: str | Path, sheet: str | None, encoding: str | None, delimiter: str | None) -> Table:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"{p}: no such file")
    if p.suffix.lower() not in SUPPORTED or p.suffix.lower() in (".pdf", ".txt", ".md", ".markdown"):
        raise InvalidInput(f"{p}: field suggestions need a table (CSV, TSV, XLSX, JSONL, JSON, Parquet)")
    source = SourceSpec(paths=[str(p)], sheet=sheet, encoding=encoding, delimiter=delimiter)
    tables = read_tables(SourceFile(p, p.name), source)
    return max(tables, key=lambda t: len(t.rows))


def explain_fields(path: str | Path, sheet: str | None = None, encoding: str | None = None,
                   delimiter: str | None = None) -> dict[str, Any]:
    """The proposed mapping with the reason for each choice, the columns, and sample values."""
    table = _load(path, sheet, encoding, delimiter)
    profiles = {c: _profile(table, c) for c in table.columns}
    candidates: list[tuple[int, int, int, str, str]] = []
    for field_name, pattern, weight in _HEADER_RULES:
        for col_index, column in enumerate(table.columns):
            if re.search(pattern, column.casefold().replace("_", " ")) and _fits(field_name, profiles[column]):
                candidates.append((-weight, _FIELD_ORDER.index(field_name), col_index, field_name, column))
    fields: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for _, _, _, field_name, column in sorted(candidates):
        if field_name in fields or column in fields.values():
            continue
        fields[field_name] = column
        reasons[field_name] = f"column name {column!r} and its values (e.g. {profiles[column].samples[:2]})"
    if "problem" not in fields:
        texts = [p for p in profiles.values() if _fits("problem", p) and p.name not in fields.values()]
        if texts:
            best = max(texts, key=lambda p: (round(p.mean_words * p.distinct, 1), -table.columns.index(p.name)))
            fields["problem"] = best.name
            reasons["problem"] = f"the most varied free-text column ({best.mean_words:.1f} words on average)"
    ordered = {f: fields[f] for f in _FIELD_ORDER if f in fields}
    return {
        "file": str(path),
        "sheet": table.sheet,
        "columns": table.columns,
        "fields": ordered,
        "reasons": {f: reasons[f] for f in ordered},
        "samples": {c: p.samples for c, p in profiles.items()},
    }


def suggest_fields(path: str | Path, sheet: str | None = None, encoding: str | None = None,
                   delimiter: str | None = None) -> dict[str, str]:
    """A ``source.fields`` mapping (field -> column) proposed for the table in ``path``."""
    return dict(explain_fields(path, sheet, encoding, delimiter)["fields"])


# Plain scalars that YAML 1.1 readers (PyYAML and many tools) would not read back as strings.
_YAML11_SPECIAL = re.compile(
    r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|~|null|Null|NULL|"
    r"[-+]?(\d[\d_]*)?\.?\d[\d_:]*([eE][-+]?\d+)?|0[xob][0-9a-fA-F_]+|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|"
    r"\d{4}-\d\d?-\d\d?([Tt ].*)?|<<|=",
)


def _scalar(value: str) -> Any:
    from ruamel.yaml.scalarstring import SingleQuotedScalarString

    return SingleQuotedScalarString(value) if _YAML11_SPECIAL.fullmatch(value) else value


def source_yaml(paths: list[str], fields: dict[str, str], sheet: str | None = None,
                comments: dict[str, str] | None = None) -> str:
    """A ``source:`` block as valid YAML: any column name (quotes, backslashes, colons, ``#``)
    reads back as itself, in ruamel's YAML 1.2 and in YAML 1.1 readers alike. ``comments`` adds an
    end-of-line comment per field."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    seq = CommentedSeq([_scalar(p) for p in paths])
    seq.fa.set_flow_style()
    mapping = CommentedMap((_scalar(k), _scalar(v)) for k, v in fields.items())
    for name, text in (comments or {}).items():
        if name in fields:
            mapping.yaml_add_eol_comment(" ".join(text.split()), _scalar(name))
    source = CommentedMap(paths=seq)
    if sheet is not None:
        source["sheet"] = _scalar(sheet)
    source["fields"] = mapping
    yaml = YAML(typ="rt")
    yaml.width = 4096  # one field per line, never folded
    out = io.StringIO()
    yaml.dump({"source": source}, out)
    return out.getvalue()


def suggest_fields_yaml(path: str | Path, sheet: str | None = None, encoding: str | None = None,
                        delimiter: str | None = None, reasons: bool = True) -> str:
    """The proposed ``source:`` block for ``path`` as YAML to paste into a pipeline file
    (what ``synthtune prepare --suggest-fields FILE`` prints), with the reason for each field as a comment."""
    found = explain_fields(path, sheet, encoding, delimiter)
    return source_yaml([str(path)], found["fields"], sheet, found["reasons"] if reasons else None)
