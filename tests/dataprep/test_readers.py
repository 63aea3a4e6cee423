"""Readers: formats, encodings, delimiters, sheets, stable ids traceable to file and row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dataprep_helpers import make_spec

from synthtune.dataprep.readers import read_sources, resolve_files
from synthtune.dataprep.readers.decode import decode_bytes
from synthtune.dataprep.rejects import Rejects
from synthtune.errors import InvalidInput
from synthtune.progress import Progress

FIELDS = {"problem": "Problem", "machine": "Machine", "solution": "Action"}


def read(base: Path, **source):  # type: ignore[no-untyped-def]
    spec = make_spec(base, source)
    rejects = Rejects()
    result = read_sources(spec.source, spec.prepare, spec.base_dir, rejects, Progress("t"))
    return result, rejects


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(tmp_path, write, delimiter):
    rows = [["Problem", "Machine", "Action"], ["Hose burst, oil everywhere", "EX1", "Replaced hose"], ["Brake weak", "HT2", "Adjusted"]]
    text = "\n".join(delimiter.join(f'"{c}"' if delimiter in c else c for c in row) for row in rows) + "\n"
    write("orders.csv", text)
    result, rejects = read(tmp_path, paths=["orders.csv"], fields=FIELDS)
    assert [r["fields"]["problem"] for r in result.records] == ["Hose burst, oil everywhere", "Brake weak"]
    assert result.files[0]["delimiter"] == delimiter
    assert len(rejects) == 0


def test_tsv_extension_and_explicit_delimiter(tmp_path, write):
    write("a.tsv", "Problem\tMachine\tAction\nLeak\tEX1\tFixed\n")
    write("b.csv", "Problem#Machine#Action\nNoise#EX2#Greased\n")
    result, _ = read(tmp_path, paths=["a.tsv"], fields=FIELDS)
    assert result.records[0]["fields"] == {"problem": "Leak", "machine": "EX1", "solution": "Fixed"}
    result, _ = read(tmp_path, paths=["b.csv"], fields=FIELDS, delimiter="#")
    assert result.records[0]["fields"]["solution"] == "Greased"


def test_ids_are_file_and_line_even_with_multiline_cells(tmp_path, write):
    write("o.csv", 'Problem,Machine,Action\n"Leak\nat the\nboom",EX1,Fixed\n\nNoise,EX2,Greased\n')
    result, _ = read(tmp_path, paths=["o.csv"], fields=FIELDS)
    assert [r["id"] for r in result.records] == ["o.csv:2", "o.csv:6"]
    assert result.records[1]["source"] == {"file": "o.csv", "row": 6}
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[6 - 1].startswith("Noise")


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "Problem,Machine,Action\nPerdita d’olio dal cilindro – urgente,Escavatore,Sostituito guarnizione €120 più\n"),
        ("latin-1", "Problem;Machine;Action\nFuite d'huile sur vérin gauche;Pelle;Remplacé joint à l'arrêt\n"),
        ("utf-8-sig", "Problem,Machine,Action\nÖlverlust am Zylinder,Bagger,Dichtung gewechselt\n"),
        ("utf-16", "Problem,Machine,Action\nÖlverlust am Zylinder,Bagger,Dichtung gewechselt\n"),
    ],
)
def test_encodings_are_detected(tmp_path, write, encoding, text):
    write("o.csv", text, encoding=encoding)
    result, _ = read(tmp_path, paths=["o.csv"], fields=FIELDS)
    expected = text.splitlines()[1].split(";" if ";" in text else ",")
    assert result.records[0]["fields"]["problem"] == expected[0]
    assert result.records[0]["fields"]["solution"] == expected[2]


def test_non_utf8_bytes_with_forced_encoding_name_the_line(tmp_path, write):
    write("o.csv", "Problem,Machine,Action\nLeak,EX1,Fixed\nPerdita d’olio,EX2,Sostituito\n", encoding="cp1252")
    with pytest.raises(InvalidInput, match=r"o\.csv:3: byte 0x92 is not valid utf-8"):
        read(tmp_path, paths=["o.csv"], fields=FIELDS, encoding="utf-8")
    result, _ = read(tmp_path, paths=["o.csv"], fields=FIELDS, encoding="cp1252")
    assert result.records[1]["fields"]["problem"] == "Perdita d’olio"


def test_decode_refuses_binary_and_says_what_it_is():
    with pytest.raises(InvalidInput, match="ZIP archive"):
        decode_bytes(b"PK\x03\x04rest", "x.csv")
    with pytest.raises(InvalidInput, match="binary data"):
        decode_bytes(b"abc\x00\x01\x02" * 10, "x.csv")


def test_excel_every_sheet_or_a_named_one(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    one = book.active
    one.title = "2023"
    one.append(["Problem", "Machine", "Action"])
    one.append(["Leak", "EX1", "Fixed"])
    two = book.create_sheet("2024")
    two.append([None, None, None])
    two.append(["Problem", "Machine", "Action"])
    two.append(["Noise", "EX2", "Greased"])
    notes = book.create_sheet("Notes")
    notes.append(["Written by the planner"])
    book.save(tmp_path / "orders.xlsx")

    result, rejects = read(tmp_path, paths=["orders.xlsx"], fields=FIELDS)
    assert [r["id"] for r in result.records] == ["orders.xlsx:2023:2", "orders.xlsx:2024:3"]
    assert result.files[0]["sheets"] == ["2023", "2024"]
    assert result.files[0]["skipped_sheets"] == [{"sheet": "Notes", "missing_columns": ["Problem", "Machine", "Action"],
                                                  "columns": ["Written by the planner"], "rows_rejected": 0}]
    assert len(rejects) == 0, "a one-line notes sheet has a header and no rows"

    result, _ = read(tmp_path, paths=["orders.xlsx"], fields=FIELDS, sheet="2024")
    assert [r["fields"]["problem"] for r in result.records] == ["Noise"]
    with pytest.raises(InvalidInput, match=r"no sheet named 'Summary' \(sheets: 2023, 2024, Notes\)"):
        read(tmp_path, paths=["orders.xlsx"], fields=FIELDS, sheet="Summary")


def test_jsonl_bad_line_is_rejected_with_its_line(tmp_path, write):
    write("o.jsonl", '{"Problem": "Leak", "Machine": "EX1", "Action": "Fixed"}\n{"Problem": "Noise",\n\n[1, 2]\n')
    result, rejects = read(tmp_path, paths=["o.jsonl"], fields=FIELDS)
    assert [r["id"] for r in result.records] == ["o.jsonl:1"]
    assert {r["id"]: r["code"] for r in rejects.rows} == {"o.jsonl:2": "bad_json", "o.jsonl:4": "bad_row"}
    assert "line 2" in rejects.rows[0]["reason"]


def test_parquet_and_json_arrays(tmp_path, write):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"Problem": ["Leak", "Noise"], "Machine": ["EX1", None], "Action": ["Fixed", "Greased"], "Hours": [1.5, 2.0]}),
                   tmp_path / "o.parquet")
    result, _ = read(tmp_path, paths=["o.parquet"], fields={**FIELDS, "hours": "Hours"})
    assert [r["id"] for r in result.records] == ["o.parquet:1", "o.parquet:2"]
    assert result.records[1]["fields"] == {"problem": "Noise", "machine": None, "solution": "Greased", "hours": 2}

    write("a.json", json.dumps([{"Problem": "Leak", "Machine": "EX1", "Action": "Fixed", "tags": ["hyd"]}]))
    write("b.json", json.dumps({"meta": {"v": 1}, "items": [{"Problem": "Noise", "Machine": "EX2", "Action": "Greased", "tags": None}]}))
    result, _ = read(tmp_path, paths=["a.json", "b.json"], fields={**FIELDS, "tags": "tags"})
    assert [r["id"] for r in result.records] == ["a.json:1", "b.json:1"]
    assert result.records[0]["fields"]["tags"] == '["hyd"]'
    assert result.files[1]["array_key"] == "items"


def test_maintnorm_blocks_become_raw_and_normalised_rows(tmp_path, write):
    write("t.norm", "PH639\t<id>\nRECTIFY\trectify\nSTEERING\tsteering\n\nCR871\t<id>\nREPL\treplace\nWAY\t\n")
    result, _ = read(tmp_path, paths=["t.norm"], fields={"problem": "raw", "solution": "normalised"})
    assert [r["id"] for r in result.records] == ["t.norm:1", "t.norm:5"]
    assert result.records[1]["fields"] == {"problem": "CR871 REPL WAY", "solution": "<id> replace"}


def test_id_column_and_duplicate_ids(tmp_path, write):
    write("a.csv", "WO,Problem,Machine,Action\n100,Leak,EX1,Fixed\n101,Noise,EX2,Greased\n100,Again,EX1,Fixed\n,No id,EX3,Fixed\n")
    write("b.csv", "WO,Problem,Machine,Action\n101,Crack,EX9,Welded\n")
    result, rejects = read(tmp_path, paths=["*.csv"], fields=FIELDS, id_column="WO")
    assert [r["id"] for r in result.records] == ["100", "101"]
    assert {r["id"]: r["code"] for r in rejects.rows} == {"a.csv:4": "duplicate_id", "a.csv:5": "missing_id", "b.csv:2": "duplicate_id"}


def test_paths_globs_folders_and_missing(tmp_path, write):
    write("logs/2023/a.csv", "x\n1\n")
    write("logs/2024/b.csv", "x\n1\n")
    write("logs/readme.bin", b"\x00")
    spec = make_spec(tmp_path, {"paths": ["logs"]})
    assert [f.label for f in resolve_files(spec.source, spec.base_dir)] == ["logs/2023/a.csv", "logs/2024/b.csv"]
    spec = make_spec(tmp_path, {"paths": ["logs/**/*.csv", "logs/2023/a.csv"]})
    assert len(resolve_files(spec.source, spec.base_dir)) == 2
    with pytest.raises(InvalidInput, match="matches no files"):
        resolve_files(make_spec(tmp_path, {"paths": ["nothing/*.csv"]}).source, str(tmp_path))
    with pytest.raises(InvalidInput, match="does not exist"):
        resolve_files(make_spec(tmp_path, {"paths": ["missing.csv"]}).source, str(tmp_path))
    with pytest.raises(InvalidInput, match="unsupported file type '.bin'"):
        resolve_files(make_spec(tmp_path, {"paths": ["logs/readme.bin"]}).source, str(tmp_path))


def test_excel_exported_trailing_commas_and_short_rows_are_kept(tmp_path, write):
    write("o.csv", "Problem,Machine,Action\nLeak,EX1,Fixed,,\nNoise,EX2\n")
    result, rejects = read(tmp_path, paths=["o.csv"], fields=FIELDS)
    assert [r["fields"]["solution"] for r in result.records] == ["Fixed", None]
    assert len(rejects) == 0
