"""Bad input: a clear error naming file and line, or rejects with a reason; never silent loss."""

from __future__ import annotations

import csv

import pytest

from synthtune.errors import InvalidInput

FIELDS = "  fields: {problem: Problem, solution: Fix}"


def _csv(path, rows, header=("Problem", "Fix"), **kw):
    with open(path, "w", newline="", encoding=kw.pop("encoding", "utf-8")) as f:
        w = csv.writer(f, **kw)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_empty_file(prepare, tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InvalidInput, match=r"e.csv: the file is empty"):
        prepare(f"  paths: [e.csv]\n{FIELDS}")


def test_missing_mapped_column_lists_columns(prepare, tmp_path):
    _csv(tmp_path / "a.csv", [["x", "y"]])
    with pytest.raises(InvalidInput, match=r"a.csv: mapped column\(s\) not found: solution -> 'Action'; the file has: Problem, Fix"):
        prepare("  paths: [a.csv]\n  fields: {problem: Problem, solution: Action}")


def test_wrong_delimiter_is_named(prepare, tmp_path):
    _csv(tmp_path / "s.csv", [["leak", "replaced seal"], ["noise", "greased"]], delimiter=";")
    with pytest.raises(InvalidInput, match="s.csv"):
        prepare(f"  paths: [s.csv]\n{FIELDS}\n  delimiter: ','")


def test_semicolon_file_is_sniffed(prepare, tmp_path):
    _csv(tmp_path / "s.csv", [["pump leaking at seal", "replaced the seal kit"], ["conveyor noisy", "greased the bearings"]], delimiter=";")
    art, stats = prepare(f"  paths: [s.csv]\n{FIELDS}")
    assert stats["kept"] == 2


def test_cp1252_bytes_are_decoded(prepare, tmp_path):
    _csv(tmp_path / "w.csv", [["Temperatur über 90 °C", "Kühler gereinigt"], ["Geräusch am Lager", "Lager getauscht"]], encoding="cp1252")
    art, stats = prepare(f"  paths: [w.csv]\n{FIELDS}")
    texts = [r["fields"]["problem"] for s in ("train", "validation", "test") for r in art.iter_jsonl(f"{s}.jsonl")]
    assert any("über 90 °C" in t for t in texts)


def test_broken_quoting_goes_to_rejects(prepare, tmp_path):
    (tmp_path / "q.csv").write_text('Problem,Fix\nbelt slipping,tensioned belt\n"leak at pump,replaced seal\nnoise,greased bearing\n')
    art, stats = prepare(f"  paths: [q.csv]\n{FIELDS}")
    assert stats["kept"] + stats["rejected"] == stats["input"]
    assert stats["kept"] == 1
    rejects = list(art.iter_jsonl("rejects.jsonl"))
    assert rejects[0]["id"] == "q.csv:3" and "broken quoting from line 3: lines 3-4 were read as one cell" in rejects[0]["reason"]


def test_huge_single_cell_is_rejected_not_crashing(prepare, tmp_path):
    big = "x" * (50 * 1024 * 1024)
    _csv(tmp_path / "big.csv", [["leak at the main pump", big], ["noise from gearbox", "replaced the bearing"], ["belt slipping", "tensioned the belt"]])
    art, stats = prepare(f"  paths: [big.csv]\n{FIELDS}")
    rejects = list(art.iter_jsonl("rejects.jsonl"))
    assert any("over 1,000,000 characters" in r["reason"] for r in rejects)
    assert stats["kept"] == 2


def test_binary_garbage_named_csv(prepare, tmp_path):
    (tmp_path / "g.csv").write_bytes(bytes(range(256)) * 100)
    with pytest.raises(InvalidInput, match="g.csv: looks like binary data"):
        prepare(f"  paths: [g.csv]\n{FIELDS}")


def test_no_matching_file(prepare):
    with pytest.raises(InvalidInput, match="matches no file"):
        prepare(f"  paths: [missing.csv]\n{FIELDS}")


def _pdf(path, text=None, encrypt=False):
    from pypdf import PdfWriter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    if text:
        for i, para in enumerate(text):
            c.drawString(72, 720 - 20 * i, para)
    else:
        c.rect(100, 100, 200, 200, fill=1)  # an "image-only" page: no text layer
    c.showPage()
    c.save()
    if encrypt:
        from pypdf import PdfReader

        writer = PdfWriter(clone_from=PdfReader(str(path)))
        writer.encrypt("owner-and-user-secret")
        with open(path, "wb") as f:
            writer.write(f)


def test_pdf_text_has_page_numbers(prepare, tmp_path):
    _pdf(tmp_path / "m.pdf", ["Set capper torque to 2.2 Nm.", "Check removal torque on 10 bottles."])
    art, stats = prepare("  paths: [m.pdf]", "prepare:\n  required: []\n")
    chunks = [r for s in ("train", "validation", "test") for r in art.iter_jsonl(f"{s}.jsonl")]
    assert chunks and chunks[0]["type"] == "chunk" and chunks[0]["source"]["page"] == 1
    assert "2.2 Nm" in chunks[0]["text"]


def test_image_only_pdf_is_reported(prepare, tmp_path):
    _pdf(tmp_path / "scan.pdf")
    with pytest.raises(InvalidInput, match="scan.pdf: the PDF has 1 page\\(s\\) but no text layer"):
        prepare("  paths: [scan.pdf]")


def test_encrypted_pdf_is_reported(prepare, tmp_path):
    _pdf(tmp_path / "enc.pdf", ["secret manual"], encrypt=True)
    with pytest.raises(InvalidInput, match="enc.pdf: the PDF is encrypted"):
        prepare("  paths: [enc.pdf]")


def test_event_log_bad_timestamps_go_to_rejects(prepare, tmp_path):
    rows = [
        ["2025-03-03T06:00:00", "capper.jam", "1", ""],
        ["not-a-time", "capper.jam", "0", ""],
        ["2025-03-03T06:00:05", "line.speed", "0", "STOP"],
        ["2025-03-03T07:00:00", "filler.pressure", "2.4", "RAISE"],
    ]
    _csv(tmp_path / "ev.csv", rows, header=("timestamp", "signal", "value", "command"))
    art, stats = prepare("  paths: [ev.csv]\n  kind: event_log\n  event_log: {gap_s: 60}", "prepare:\n  required: []\n")
    rejects = list(art.iter_jsonl("rejects.jsonl"))
    assert [r["id"] for r in rejects] == ["ev.csv:3"] and "unparseable timestamp" in rejects[0]["reason"]
    episodes = [r for s in ("train", "validation", "test") for r in art.iter_jsonl(f"{s}.jsonl")]
    assert sorted(len(e["events"]) for e in episodes) == [1, 2]
    assert stats["kept"] + stats["rejected"] == stats["input"] == 4
