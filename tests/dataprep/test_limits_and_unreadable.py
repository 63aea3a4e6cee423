"""Bounds before expanding a file (finding 8) and one unreadable file among many (finding 14)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from dataprep_helpers import assert_counts_add_up, load_artifact, make_spec
from pdfs import text_pdf

from synthtune.dataprep import run
from synthtune.dataprep.readers import read_sources
from synthtune.dataprep.rejects import Rejects
from synthtune.errors import InvalidInput
from synthtune.progress import Progress

FIELDS = {"problem": "Problem", "machine": "Machine", "solution": "Action"}


def read(base: Path, **source):  # type: ignore[no-untyped-def]
    spec = make_spec(base, source)
    rejects = Rejects()
    return read_sources(spec.source, spec.prepare, spec.base_dir, rejects, Progress("t")), rejects


def _big_workbook(path: Path, rows: int) -> Path:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("orders")
    sheet.append(["Problem", "Machine", "Action"])
    for _ in range(rows):
        sheet.append(["hydraulic leak at boom cylinder", "EX1", "replaced the seal kit"])
    book.save(path)
    return path


def _bomb(path: Path, rows: int) -> Path:
    """A real workbook whose sheet is rewritten to ``rows`` identical rows, deflated hard (as the review's 44 kB file)."""
    small = _big_workbook(path.with_name("small.xlsx"), 1)
    row = '<row><c t="inlineStr"><is><t>leak</t></is></c><c t="inlineStr"><is><t>EX1</t></is></c></row>'
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                head, _, tail = data.decode().partition("<sheetData>")
                body = row * rows
                data = (head + "<sheetData>" + body + tail.split("</sheetData>", 1)[1].join(["</sheetData>", ""])).encode()
            out.writestr(item.filename, data)
    return path


def test_a_workbook_that_expands_hugely_is_refused_before_it_is_read(tmp_path):
    path = _bomb(tmp_path / "bomb.xlsx", 100_000)
    with zipfile.ZipFile(path) as z:
        expanded = sum(m.file_size for m in z.infolist())
    assert path.stat().st_size < 50_000 and expanded > 9_000_000  # small on disk, large once unzipped
    with pytest.raises(InvalidInput, match=r"bomb\.xlsx: member xl/worksheets/sheet1\.xml expands \d+x .*zip bomb"):
        read(tmp_path, paths=["bomb.xlsx"], fields=FIELDS)
    with pytest.raises(InvalidInput, match=r"bomb\.xlsx: expands to [\d.]+ MB, more than source\.max_file_mb \(5 MB\)"):
        read(tmp_path, paths=["bomb.xlsx"], fields=FIELDS, max_file_mb=5)


def test_rows_are_capped_per_file_in_every_tabular_format(tmp_path, write):
    rows = "".join(f"leak {i},EX1,fixed {i}\n" for i in range(30))
    write("o.csv", "Problem,Machine,Action\n" + rows)
    write("o.jsonl", "".join(f'{{"Problem": "leak {i}", "Machine": "EX1", "Action": "fixed"}}\n' for i in range(30)))
    _big_workbook(tmp_path / "o.xlsx", 30)
    for name, label in (("o.csv", "o.csv"), ("o.jsonl", "o.jsonl"), ("o.xlsx", r"o.xlsx\[orders\]")):
        with pytest.raises(InvalidInput, match=rf"{label}: more than source\.max_rows \(20\) rows"):
            read(tmp_path, paths=[name], fields=FIELDS, max_rows=20)
    result, _ = read(tmp_path, paths=["o.csv"], fields=FIELDS, max_rows=30)
    assert len(result.records) == 30


def test_a_file_larger_than_the_limit_is_refused_naming_it(tmp_path, write):
    write("big.csv", "Problem,Machine,Action\n" + "leak,EX1,fixed\n" * 80_000)
    with pytest.raises(InvalidInput, match=r"big\.csv: [\d.]+ MB is larger than source\.max_file_mb \(1 MB\)"):
        read(tmp_path, paths=["big.csv"], fields=FIELDS, max_file_mb=1)


def _orders(n: int, tag: str) -> str:
    return "Problem,Machine,Action\n" + "".join(f"{tag} hydraulic leak number {i} at the boom,EX{i},replaced seal {i}\n" for i in range(n))


@pytest.fixture
def mixed_folder(tmp_path, write):  # type: ignore[no-untyped-def]
    write("orders/a.csv", _orders(6, "alpha"))
    write("orders/b.csv", _orders(6, "beta"))
    write("orders/empty.pdf", b"")  # a 0-byte PDF among real files
    buffer = io.BytesIO(b"PK\x03\x04 not really a zip")
    write("orders/broken.xlsx", buffer.getvalue())
    return tmp_path


def test_unreadable_files_go_to_rejects_and_the_prepare_goes_on(mixed_folder, file_store):
    spec = make_spec(mixed_folder, {"paths": ["orders"], "fields": FIELDS})
    result = load_artifact(file_store, run(spec, {}, file_store))
    assert_counts_add_up(result)
    file_rejects = {r["id"]: r for r in result["rejects"] if r["code"] == "unreadable_file"}
    assert set(file_rejects) == {"orders/broken.xlsx", "orders/empty.pdf"}
    assert file_rejects["orders/empty.pdf"]["reason"].startswith("orders/empty.pdf: ")
    assert "not a readable .xlsx workbook" in file_rejects["orders/broken.xlsx"]["reason"]
    assert sum(len(result[s]) for s in ("train", "validation", "test")) == 12


def test_strict_source_or_nothing_readable_is_still_bad_input(mixed_folder, tmp_path, write):
    with pytest.raises(InvalidInput, match=r"orders/(broken\.xlsx|empty\.pdf)"):
        read(mixed_folder, paths=["orders"], fields=FIELDS, strict=True)
    write("bad/one.pdf", b"")
    text_pdf(tmp_path / "bad" / "ok.pdf", [None])  # a PDF with no text layer reads, with its page rejected
    write("bad/two.xlsx", b"garbage")
    with pytest.raises(InvalidInput, match=r"none of the 2 files could be read"):
        read(tmp_path, paths=["bad/one.pdf", "bad/two.xlsx"], fields=FIELDS)
