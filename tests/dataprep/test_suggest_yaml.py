"""--suggest-fields output as YAML: any column name reads back as itself, and the block runs as a pipeline."""

from __future__ import annotations

import csv

import pytest
from dataprep_helpers import assert_counts_add_up, load_artifact

from synthtune.dataprep import run, source_yaml, suggest_fields, suggest_fields_yaml
from synthtune.spec.loader import load_spec_text, parse_yaml

ODD = {
    "problem": 'Fault: "main" C:\\temp\\x',
    "solution": "Work done (it's \\ fixed)",
    "machine": "Machine #1",
    "hours": "1.5",
    "cause": "- cause: why?",
    "yes": "no",
    "note": "null",
    "when": "2024-01-02",
    "tab": "a\tb",
    "unicode": "Störung – Ursache",
    "brackets": "[x], {y}",
    "percent": "%done",
    "star": "*ref",
}


def test_source_yaml_reads_back_every_name_as_itself():
    paths = ["C:\\data\\orders: 2024.csv", "yes", "#1.csv"]
    text = source_yaml(paths, ODD, sheet="2024", comments={"problem": "the\nreason: it's # here"})
    assert parse_yaml(text)["source"] == {"paths": paths, "sheet": "2024", "fields": ODD}
    spec = load_spec_text("version: 1\nname: t\n" + text)
    assert spec.source.fields == ODD and spec.source.paths == paths and spec.source.sheet == "2024"
    yaml = pytest.importorskip("yaml")  # a YAML 1.1 reader: yes/no/null/numbers/dates must be quoted for it
    assert yaml.safe_load(text)["source"] == {"paths": paths, "sheet": "2024", "fields": ODD}


def test_suggest_fields_yaml_for_odd_headers_runs_as_a_pipeline(tmp_path, file_store):
    header = ['Fault: "main" \\ text', "Work done (it's)", "Machine #", "Hours"]
    with open(tmp_path / "orders.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(30):
            w.writerow([f"hydraulic hose {i} burst at the boom, oil on deck", f"replaced hose {i} and topped up", f"EX{i % 3}", i % 7 + 1])
    mapping = suggest_fields(tmp_path / "orders.csv")
    assert mapping == {"problem": header[0], "solution": header[1], "machine": header[2], "hours": header[3]}
    text = suggest_fields_yaml(tmp_path / "orders.csv")
    assert "# column name" in text, "the reasons travel as comments"
    assert parse_yaml(text)["source"]["fields"] == mapping
    spec = load_spec_text("version: 1\nname: t\n" + text, base_dir=str(tmp_path))
    result = load_artifact(file_store, run(spec, {}, file_store))
    assert_counts_add_up(result)
    kept = [r for s in ("train", "validation", "test") for r in result[s]]
    assert len(kept) == 30 and all(r["fields"]["machine"].startswith("EX") and r["fields"]["hours"] for r in kept)
