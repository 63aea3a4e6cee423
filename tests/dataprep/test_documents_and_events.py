"""Documents as overlapping chunks with page numbers; event logs as episodes by gap, window and machine."""

from __future__ import annotations

import json

import pytest
from dataprep_helpers import make_spec
from pdfs import text_pdf

from synthtune.dataprep.readers import read_sources
from synthtune.dataprep.readers.documents import chunk_spans
from synthtune.dataprep.readers.events import parse_timestamp
from synthtune.dataprep.rejects import Rejects
from synthtune.progress import Progress


def read(base, source, prepare=None):  # type: ignore[no-untyped-def]
    spec = make_spec(base, source, prepare)
    rejects = Rejects()
    return read_sources(spec.source, spec.prepare, spec.base_dir, rejects, Progress("t")), rejects


@pytest.mark.parametrize(("size", "overlap"), [(100, 0), (100, 30), (250, 99), (1500, 200)])
def test_chunks_cover_the_text_with_the_asked_overlap(size, overlap):
    words = [f"word{i}" for i in range(900)]
    text = " ".join(words)
    spans = chunk_spans(text, size, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (s1, e1), (s2, _) in zip(spans, spans[1:], strict=False):
        assert e1 - s1 <= size and s2 > s1
        assert s2 <= e1, "no gap between chunks"
        assert e1 - s2 <= overlap, "overlap never exceeds the setting"
        assert s2 == 0 or text[s2 - 1] == " ", "chunks start at a word"


def test_pdf_chunks_carry_page_numbers(tmp_path):
    pages = ["Safety: lock out the machine before service.", "\n".join(f"Step {i}: check the hydraulic hose number {i} for leaks." for i in range(40))]
    text_pdf(tmp_path / "manual.pdf", pages)
    result, rejects = read(tmp_path, {"paths": ["manual.pdf"]}, {"chunk_chars": 400, "chunk_overlap": 80})
    ids = [r["id"] for r in result.records]
    assert ids[0] == "manual.pdf:p1:c1"
    assert ids[1:4] == ["manual.pdf:p2:c1", "manual.pdf:p2:c2", "manual.pdf:p2:c3"]
    assert all(r["type"] == "chunk" and len(r["text"]) <= 400 for r in result.records)
    assert result.records[2]["source"] == {"file": "manual.pdf", "page": 2, "chunk": 2}
    assert "lock out the machine" in result.records[0]["text"]
    assert result.files[0]["pages"] == 2 and len(rejects) == 0


def test_markdown_chunks_name_their_line(tmp_path, write):
    body = "# Hydraulics\n\n" + "\n\n".join(f"Paragraph {i}: bleed the air from cylinder {i} after refilling." for i in range(30))
    write("notes.md", body)
    result, _ = read(tmp_path, {"paths": ["notes.md"]}, {"chunk_chars": 300, "chunk_overlap": 50})
    first, second = result.records[0], result.records[1]
    assert first["id"] == "notes.md:c1" and first["source"]["line"] == 1
    line = second["source"]["line"]
    assert second["text"].split()[0] in body.splitlines()[line - 1]


def test_timestamps_iso_epoch_and_millis():
    assert parse_timestamp("2024-03-01T10:00:00Z") == parse_timestamp("2024-03-01 10:00:00") == 1709287200.0
    assert parse_timestamp("1709287200") == parse_timestamp(1709287200000) == 1709287200.0
    assert parse_timestamp("01.03.2024 10:00", "%d.%m.%Y %H:%M") == 1709287200.0
    with pytest.raises(ValueError):
        parse_timestamp("soon")


def test_episodes_span_files_and_split_by_gap_and_machine(tmp_path, write):
    # One machine's log in two files: the episode that starts in the first continues in the second.
    write("logs/a.csv", "time,machine,signal,value,command\n"
          "2024-03-01T10:00:00,P1,pressure,180,\n2024-03-01T10:00:05,P1,pressure,240,\n"
          "2024-03-01T10:00:00,P2,temp,60,\n")
    write("logs/b.jsonl", "\n".join(json.dumps(x) for x in [
        {"time": "2024-03-01T10:00:09", "machine": "P1", "signal": "valve", "value": 0, "command": "CLOSE"},
        {"time": "2024-03-01T11:00:00", "machine": "P1", "signal": "pressure", "value": 175},
    ]))
    source = {"paths": ["logs/a.csv", "logs/b.jsonl"], "event_log": {"timestamp": "time", "machine": "machine", "gap_s": 60}}
    result, rejects = read(tmp_path, source)
    episodes = {r["id"]: r for r in result.records}
    assert set(episodes) == {"logs/a.csv:2", "logs/a.csv:4", "logs/b.jsonl:2"}
    first = episodes["logs/a.csv:2"]
    assert first["type"] == "episode" and first["fields"] == {"machine": "P1"}
    assert [e["signal"] for e in first["events"]] == ["pressure", "pressure", "valve"]
    assert first["source"]["last_file"] == "logs/b.jsonl"
    assert "+9.0s valve = 0 [command: CLOSE]" in first["text"]
    assert first["text"].startswith("Machine P1, events from 2024-03-01T10:00:00Z")
    assert len(rejects) == 0


def test_window_cuts_long_episodes(tmp_path, write):
    rows = "".join(f"{1709287200 + 10 * i},speed,{i}\n" for i in range(30))  # 300 s of events every 10 s
    write("log.csv", "timestamp,signal,value\n" + rows)
    result, _ = read(tmp_path, {"paths": ["log.csv"], "event_log": {"window_s": 100}})
    assert [len(r["events"]) for r in result.records] == [11, 11, 8]


def test_work_orders_and_the_lines_event_log_in_one_source(tmp_path, write):
    """With source.kind auto, a table without the event columns is read as records beside the event log."""
    write("orders.csv", "Title,Fix\nCapper jams,Realign the chute\nLabeler wrinkles,Reset web tension\n")
    write("events.csv", "timestamp,signal,value,command\n2025-03-03T06:00:00,capper.chute,LOW,\n"
          "2025-03-03T06:00:07,line.speed,0,STOP_CAPPER\n2025-03-03T09:00:00,labeler.web,SLACK,\n")
    source = {"paths": ["orders.csv", "events.csv"], "fields": {"problem": "Title", "solution": "Fix"}, "event_log": {"gap_s": 60}}
    result, rejects = read(tmp_path, source)
    kinds = {f["file"]: f["kind"] for f in result.files}
    assert kinds == {"orders.csv": "records", "events.csv": "event_log"}
    types = sorted(r["type"] for r in result.records)
    assert types == ["episode", "episode", "record", "record"]
    assert len(rejects) == 0
    # Asked for explicitly, an event log without its columns is still an error naming them.
    with pytest.raises(Exception, match="event log columns missing"):
        read(tmp_path, {**source, "kind": "event_log"})
