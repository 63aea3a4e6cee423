"""Machine event logs (timestamp, signal, value, command) grouped into episodes by gap or window."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from synthtune.dataprep.readers import RawRow
from synthtune.errors import InvalidInput
from synthtune.spec.source import EventLogSource


@dataclass
class Episode:
    id: str
    file: str
    first_row: int
    events: list[dict[str, Any]] = field(default_factory=list)

    def render(self) -> str:
        lines = []
        for e in self.events:
            cmd = f"  -> command {e['command']}" if e.get("command") else ""
            lines.append(f"{e['t']}  {e['signal']} = {e['value']}{cmd}")
        return "\n".join(lines)


def parse_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(float(value), dt.UTC).replace(tzinfo=None)
    text = str(value).strip()
    try:
        return dt.datetime.fromtimestamp(float(text), dt.UTC).replace(tzinfo=None)
    except ValueError:
        pass
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def episodes_from_rows(rows: list[RawRow], cfg: EventLogSource, columns: list[str], name: str) -> tuple[list[Episode], list[dict[str, Any]]]:
    """Episodes and rejects (rows whose timestamp cannot be read) from one log file's rows."""
    needed = [c for c in (cfg.timestamp, cfg.signal, cfg.value) if c not in columns]
    if needed:
        raise InvalidInput(f"{name}: event-log column(s) {', '.join(map(repr, needed))} not found; columns: {', '.join(columns)}")
    rejects: list[dict[str, Any]] = []
    events = []
    for row in rows:
        rid = f"{row.file}:{row.row}"
        if row.reject:
            rejects.append({"id": rid, "reason": row.reject})
            continue
        try:
            t = parse_time(row.values[cfg.timestamp])
        except (ValueError, TypeError, OverflowError, OSError):
            rejects.append({"id": rid, "reason": f"unparseable timestamp {row.values.get(cfg.timestamp)!r} in column {cfg.timestamp!r}"})
            continue
        command = row.values.get(cfg.command) if cfg.command else None
        events.append((t, row.row, {"t": t.isoformat(), "signal": str(row.values[cfg.signal]), "value": str(row.values[cfg.value]), "command": str(command or "")}))
    events.sort(key=lambda e: (e[0], e[1]))
    episodes: list[Episode] = []
    start: dt.datetime | None = None
    last: dt.datetime | None = None
    for t, row_no, event in events:
        new = (
            last is None
            or (t - last).total_seconds() > cfg.gap_s
            or (cfg.window_s is not None and start is not None and (t - start).total_seconds() > cfg.window_s)
        )
        if new:
            episodes.append(Episode(f"{name}:e{len(episodes) + 1}", name, row_no))
            start = t
        episodes[-1].events.append(event)
        last = t
    return episodes, rejects
