"""Machine event logs: rows of timestamp/signal/value/command, grouped into episodes by gap or window."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from synthtune.dataprep.readers.mapping import find_column
from synthtune.dataprep.readers.table import Table
from synthtune.dataprep.rejects import Rejects
from synthtune.errors import InvalidInput
from synthtune.spec.source import EventLogSource

MAX_RENDERED_EVENTS = 200


@dataclass
class Event:
    t: float
    signal: str
    value: Any
    command: str | None
    machine: str | None
    rid: str
    file: str
    row: int
    order: int


def parse_timestamp(value: Any, fmt: str | None = None) -> float:
    """Epoch seconds from ISO 8601, epoch seconds/milliseconds, or ``fmt``; naive times count as UTC."""
    if isinstance(value, bool) or value is None:
        raise ValueError("empty")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        if not text:
            raise ValueError("empty")
        try:
            number = float(text)
        except ValueError:
            stamp = dt.datetime.strptime(text, fmt) if fmt else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.UTC)
            return stamp.timestamp()
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number / 1000.0 if number > 1e11 else number  # 13-digit epochs are milliseconds


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def looks_like_event_log(table: Table, spec: EventLogSource) -> bool:
    """Whether the table has the event log's timestamp, signal and value columns."""
    return all(find_column(table.columns, name) is not None for name in (spec.timestamp, spec.signal, spec.value))


def _columns(table: Table, spec: EventLogSource) -> dict[str, str]:
    wanted = {"timestamp": spec.timestamp, "signal": spec.signal, "value": spec.value}
    if spec.command:
        wanted["command"] = spec.command
    if spec.machine:
        wanted["machine"] = spec.machine
    found = {k: find_column(table.columns, v) for k, v in wanted.items()}
    missing = [f"event_log.{k} names column {wanted[k]!r}, which {table.label} does not have" for k, c in found.items() if c is None
               and k != "command"]
    if missing:
        raise InvalidInput(f"{table.label}: event log columns missing; the columns are: {', '.join(map(repr, table.columns))}", missing)
    return {k: c for k, c in found.items() if c is not None}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def events_from_table(table: Table, spec: EventLogSource, rejects: Rejects, order_start: int) -> list[Event]:
    """Parse rows; a row with an unparseable timestamp is rejected, a file where none parses is an error."""
    cols = _columns(table, spec)
    for bad in table.rejects:
        rejects.add(table.row_id(bad.row), "read", bad.code, f"{table.label}: {bad.reason}", source=table.row_source(bad.row))
    events: list[Event] = []
    bad_rows: list[tuple[int, Any, str]] = []
    for i, (row_no, values) in enumerate(table.rows):
        raw_t = values.get(cols["timestamp"])
        try:
            t = parse_timestamp(raw_t, spec.timestamp_format)
        except (ValueError, OverflowError, OSError) as exc:
            bad_rows.append((row_no, raw_t, str(exc)))
            continue
        signal = _text(values.get(cols["signal"]))
        if signal is None:
            rejects.add(table.row_id(row_no), "read", "bad_event", f"{table.label}: row {row_no} has no signal name",
                        source=table.row_source(row_no))
            continue
        machine = _text(values.get(cols["machine"])) if "machine" in cols else None
        command = _text(values.get(cols["command"])) if "command" in cols else None
        events.append(Event(t, signal, values.get(cols["value"]), command, machine, table.row_id(row_no), table.file, row_no, order_start + i))
    if bad_rows and not events:
        row_no, raw_t, why = bad_rows[0]
        hint = f"the format {spec.timestamp_format!r}" if spec.timestamp_format else "ISO 8601 or epoch seconds"
        raise InvalidInput(
            f"{table.label}:{row_no}: timestamp {raw_t!r} in column {cols['timestamp']!r} cannot be parsed as {hint} ({why}); "
            f"none of the {len(bad_rows)} rows has a readable timestamp (set source.event_log.timestamp_format)"
        )
    for row_no, raw_t, why in bad_rows:
        rejects.add(table.row_id(row_no), "read", "bad_timestamp",
                    f"{table.label}: row {row_no}: timestamp {raw_t!r} cannot be parsed ({why})", source=table.row_source(row_no))
    return events


def group_episodes(events: list[Event], spec: EventLogSource) -> list[list[Event]]:
    """Per machine in time order: a new episode after ``gap_s`` of silence or ``window_s`` of length."""
    ordered = sorted(events, key=lambda e: (e.machine or "", e.t, e.order))
    episodes: list[list[Event]] = []
    for event in ordered:
        current = episodes[-1] if episodes else None
        if (
            current is None
            or event.machine != current[0].machine
            or event.t - current[-1].t > spec.gap_s
            or (spec.window_s is not None and event.t - current[0].t > spec.window_s)
        ):
            episodes.append([event])
        else:
            current.append(event)
    return episodes


def render_episode(episode: list[Event]) -> str:
    """The episode as prompt text: one line per event, times relative to its start."""
    t0 = episode[0].t
    head = f"Machine {episode[0].machine}, " if episode[0].machine else ""
    lines = [f"{head}events from {_iso(t0)} to {_iso(episode[-1].t)} ({len(episode)} events):"]
    for e in episode[:MAX_RENDERED_EVENTS]:
        line = f"+{e.t - t0:.1f}s {e.signal} = {'' if e.value is None else e.value}"
        if e.command:
            line += f" [command: {e.command}]"
        lines.append(line)
    if len(episode) > MAX_RENDERED_EVENTS:
        lines.append(f"... {len(episode) - MAX_RENDERED_EVENTS} more events")
    return "\n".join(lines)


def episode_record(episode: list[Event]) -> dict[str, Any]:
    first, last = episode[0], episode[-1]
    fields: dict[str, Any] = {"machine": first.machine} if first.machine else {}
    return {
        "id": first.rid,
        "type": "episode",
        "fields": fields,
        "text": render_episode(episode),
        "events": [{"t": _iso(e.t), "signal": e.signal, "value": e.value, "command": e.command} for e in episode],
        "source": {"file": first.file, "row": first.row, "last_file": last.file, "last_row": last.row, "events": len(episode)},
    }
