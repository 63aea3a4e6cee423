"""Bad input: a clear error naming the file and line, or a reject with a reason. Never a crash or silent loss."""

from __future__ import annotations

import os

import pytest
from dataprep_helpers import assert_counts_add_up, load_artifact, make_spec
from pdfs import encrypt_pdf, text_pdf

from synthtune.dataprep import run
from synthtune.errors import EXIT_BAD_INPUT, InvalidInput

FIELDS = {"problem": "Problem", "machine": "Machine", "solution": "Action"}
GOOD_ROWS = "".join(f"Hydraulic leak number {i} at boom,EX{i % 3},Replaced seal {i}\n" for i in range(12))


def prepare(tmp_path, file_store, source, prepare=None):  # type: ignore[no-untyped-def]
    spec = make_spec(tmp_path, source, prepare or {"outliers": {"method": "none"}})
    return load_artifact(file_store, run(spec, {}, file_store))


def bad_row(tmp_path, write, file_store, tail: str, code: str):  # type: ignore[no-untyped-def]
    """Prepare o.csv: 12 good rows, then ``tail`` from line 14. The one reject with ``code`` (it names line 14), and the result."""
    write("o.csv", "Problem,Machine,Action\n" + GOOD_ROWS + tail)
    result = prepare(tmp_path, file_store, {"paths": ["o.csv"], "fields": FIELDS})
    [bad] = [r for r in result["rejects"] if r["code"] == code]
    assert bad["id"] == "o.csv:14"
    return bad, result


def test_empty_file(tmp_path, write, file_store):
    write("empty.csv", "")
    with pytest.raises(InvalidInput, match=r"empty\.csv: the file is empty \(0 bytes\)") as err:
        prepare(tmp_path, file_store, {"paths": ["empty.csv"], "fields": FIELDS})
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_header_only_file_says_no_records(tmp_path, write, file_store):
    write("header.csv", "Problem,Machine,Action\n")
    with pytest.raises(InvalidInput, match=r"no records could be read from header\.csv"):
        prepare(tmp_path, file_store, {"paths": ["header.csv"], "fields": FIELDS})


def test_mapped_column_missing_lists_the_columns(tmp_path, write, file_store):
    write("o.csv", "Problem,Asset,Action\n" + GOOD_ROWS)
    with pytest.raises(InvalidInput) as err:
        prepare(tmp_path, file_store, {"paths": ["o.csv"], "fields": {**FIELDS, "machine": "Machne"}})
    message = str(err.value)
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "o.csv:1:" in message
    assert "'Problem', 'Asset', 'Action'" in message
    assert "field 'machine' maps to column 'Machne'" in message


def _workbook(path, sheets):  # type: ignore[no-untyped-def]
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)


def test_a_sheet_without_the_mapped_columns_is_rejected_row_by_row(tmp_path, file_store):
    orders = [["Problem", "Machine", "Action"]] + [[f"Hydraulic leak number {i} at boom", f"EX{i % 3}", f"Replaced seal {i}"]
                                                   for i in range(12)]
    notes = [["Note", "Author"], ["Bucket teeth ordered for May", "planner"], ["Shift change at 6", "planner"],
             ["Call the dealer about the warranty", "supervisor"]]
    legend = [["Code", "Meaning", "Action"], ["PM01", "breakdown", "repair"]]
    _workbook(tmp_path / "book.xlsx", {"Orders": orders, "Notes": notes, "Legend": legend})
    result = prepare(tmp_path, file_store, {"paths": ["book.xlsx"], "fields": FIELDS})
    assert_counts_add_up(result)
    stats = result["stats"]
    assert stats["counts"]["input"] == 12 + 3 + 1, "the other sheets' rows are input too"
    assert stats["counts"]["kept"] == 12
    unmapped = [r for r in result["rejects"] if r["code"] == "unmapped_sheet"]
    assert [r["id"] for r in unmapped] == ["book.xlsx:Notes:2", "book.xlsx:Notes:3", "book.xlsx:Notes:4", "book.xlsx:Legend:2"]
    assert "book.xlsx[Notes]: row 3: sheet 'Notes' of book.xlsx lacks the mapped column(s) 'Problem', 'Machine', 'Action'" in unmapped[1]["reason"]
    assert "lacks the mapped column(s) 'Problem', 'Machine' (its columns: 'Code', 'Meaning', 'Action')" in unmapped[3]["reason"]
    assert unmapped[0]["source"] == {"file": "book.xlsx", "sheet": "Notes", "row": 2}
    assert stats["rejected_by_code"]["unmapped_sheet"] == 4
    [info] = stats["files"]
    assert info["sheets"] == ["Orders"]
    assert [(s["sheet"], s["rows_rejected"]) for s in info["skipped_sheets"]] == [("Notes", 3), ("Legend", 1)]


def test_a_workbook_where_no_sheet_has_the_mapped_columns_is_an_error(tmp_path, file_store):
    _workbook(tmp_path / "book.xlsx", {"Orders": [["Issue", "Unit", "Fix"], ["Leak", "EX1", "Seal"]], "Notes": [["Note"], ["x"]]})
    with pytest.raises(InvalidInput) as err:
        prepare(tmp_path, file_store, {"paths": ["book.xlsx"], "fields": FIELDS})
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "book.xlsx[Orders]:1: 3 mapped column(s) missing; the columns are: 'Issue', 'Unit', 'Fix'" in str(err.value)


def test_wrong_delimiter_points_at_the_right_one(tmp_path, write, file_store):
    write("o.csv", "Problem;Machine;Action\nLeak;EX1;Fixed\n")
    with pytest.raises(InvalidInput, match=r"'Problem;Machine;Action'.*looks ';'-separated"):
        prepare(tmp_path, file_store, {"paths": ["o.csv"], "fields": FIELDS, "delimiter": ","})


def test_row_with_too_many_cells_is_rejected(tmp_path, write, file_store):
    bad, result = bad_row(tmp_path, write, file_store, "Leak, oil everywhere,EX1,Fixed\n", "bad_row")
    assert "has 4 cells but the header has 3" in bad["reason"]
    assert_counts_add_up(result)


def test_non_utf8_bytes_are_decoded_or_named(tmp_path, write, file_store):
    write("o.csv", "Problem,Machine,Action\n" + GOOD_ROWS + "Perdita d’olio dal cilindro,EX1,Sostituita guarnizione\n", encoding="cp1252")
    result = prepare(tmp_path, file_store, {"paths": ["o.csv"], "fields": FIELDS})
    kept = [r for s in ("train", "validation", "test") for r in result[s]]
    assert any(r["fields"]["problem"] == "Perdita d’olio dal cilindro" for r in kept)
    assert result["stats"]["files"][0]["encoding"] == "cp1252"
    with pytest.raises(InvalidInput, match=r"o\.csv:14: byte 0x92 is not valid utf-8"):
        prepare(tmp_path, file_store, {"paths": ["o.csv"], "fields": FIELDS, "encoding": "utf-8"})


def test_broken_quoting_mid_file_is_a_reject_with_lines(tmp_path, write, file_store):
    bad, result = bad_row(tmp_path, write, file_store, '"Leak" at boom,EX1,Fixed\nNoise at swing,EX2,Greased\n', "bad_quoting")
    assert "broken quoting on line 14" in bad["reason"]
    kept = [r["fields"]["problem"] for s in ("train", "validation", "test") for r in result[s]]
    assert "Noise at swing" in kept
    assert_counts_add_up(result)


def test_unclosed_quote_is_an_error_naming_where_it_opened(tmp_path, write, file_store):
    write("o.csv", "Problem,Machine,Action\n" + GOOD_ROWS + '"Leak at boom,EX1,Fixed\nNoise,EX2,Greased\n')
    with pytest.raises(InvalidInput, match=r"o\.csv:14: a quoted cell opened on this line is never closed \(the file ends inside it at line 15\)"):
        prepare(tmp_path, file_store, {"paths": ["o.csv"], "fields": FIELDS})


def test_a_50mb_cell_is_rejected_not_crashing(tmp_path, write, file_store):
    big = "A" * (50 * 1024 * 1024)
    bad, result = bad_row(tmp_path, write, file_store, f'"{big}",EX1,Fixed\n' + "Last row,EX2,Done\n", "cell_too_large")
    assert "52,428,800 characters" in bad["reason"]
    assert len(bad["reason"]) < 300
    assert result["stats"]["counts"]["input"] == 14
    assert_counts_add_up(result)


def test_binary_garbage_named_csv(tmp_path, write, file_store):
    write("garbage.csv", os.urandom(4096) + b"\x00")
    with pytest.raises(InvalidInput, match=r"garbage\.csv.*binary data"):
        prepare(tmp_path, file_store, {"paths": ["garbage.csv"], "fields": FIELDS})
    write("book.csv", b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(InvalidInput, match=r"book\.csv: this is a ZIP archive"):
        prepare(tmp_path, file_store, {"paths": ["book.csv"], "fields": FIELDS})


def test_image_only_pdf_is_reported(tmp_path, file_store):
    text_pdf(tmp_path / "scan.pdf", [None, None])
    with pytest.raises(InvalidInput, match=r"scan\.pdf: none of its 2 page\(s\) has a text layer"):
        prepare(tmp_path, file_store, {"paths": ["scan.pdf"]})


def test_image_page_inside_a_text_pdf_is_a_reject(tmp_path, file_store):
    text_pdf(tmp_path / "manual.pdf", ["Check the hydraulic oil level daily before starting the engine."] * 2 + [None])
    result = prepare(tmp_path, file_store, {"paths": ["manual.pdf"]})
    assert [(r["id"], r["code"]) for r in result["rejects"] if r["step"] == "read"] == [("manual.pdf:p3", "no_text_layer")]
    assert_counts_add_up(result)


def test_encrypted_pdf_is_reported(tmp_path, file_store):
    plain = text_pdf(tmp_path / "plain.pdf", ["Torque the wheel nuts to 650 Nm in a star pattern."])
    encrypt_pdf(plain, tmp_path / "locked.pdf")
    with pytest.raises(InvalidInput, match=r"locked\.pdf: the PDF is encrypted"):
        prepare(tmp_path, file_store, {"paths": ["locked.pdf"]})


def test_not_a_pdf_named_pdf(tmp_path, write, file_store):
    write("fake.pdf", "just some text\n")
    with pytest.raises(InvalidInput, match=r"fake\.pdf: not a readable PDF"):
        prepare(tmp_path, file_store, {"paths": ["fake.pdf"]})


def test_event_log_with_unparseable_timestamps(tmp_path, write, file_store):
    rows = "".join(f"2024-03-01T10:00:{i:02d},pump_pressure,{180 + i},\n" for i in range(10))
    write("log.csv", "timestamp,signal,value,command\n" + rows + "yesterday at noon,pump_pressure,12,STOP\n")
    result = prepare(tmp_path, file_store, {"paths": ["log.csv"], "kind": "event_log"})
    [bad] = [r for r in result["rejects"] if r["code"] == "bad_timestamp"]
    assert bad["id"] == "log.csv:12"
    assert "'yesterday at noon' cannot be parsed" in bad["reason"]
    assert result["stats"]["counts"]["input"] == 2  # one episode + one unreadable row

    write("bad.csv", "timestamp,signal,value\n01/03/2024 10:00,pump,1\n01/03/2024 10:01,pump,2\n")
    with pytest.raises(InvalidInput, match=r"bad\.csv:2: timestamp '01/03/2024 10:00' in column 'timestamp' cannot be parsed"):
        prepare(tmp_path, file_store, {"paths": ["bad.csv"], "kind": "event_log"})
    ok = prepare(tmp_path, file_store, {"paths": ["bad.csv"], "event_log": {"timestamp_format": "%d/%m/%Y %H:%M"}})
    assert ok["stats"]["counts"]["kept"] == 1


def test_required_field_that_nothing_maps_is_an_error(tmp_path, write, file_store):
    write("o.csv", "Problem,Machine\nLeak,EX1\n")
    with pytest.raises(InvalidInput, match=r"prepare\.required names 'solution', but source\.fields does not map it"):
        prepare(tmp_path, file_store, {"paths": ["o.csv"], "fields": {"problem": "Problem", "machine": "Machine"}})
