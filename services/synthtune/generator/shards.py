"""Finished records saved in shards under the store's ``work/generate/<key>/``, so a killed run resumes.

A shard is one JSON line per finished record: its cache key (record + method + prompt version
+ teacher + sampling), id, candidates and token counts. Shards are written whole
(``store.put_text`` is atomic on both backends) and never rewritten; each run writes its own
names, so two runs never overwrite each other. Failed records are not saved: a resume asks again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from synthtune.generator.methods.base import Candidate
from synthtune.store import Store

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    key: str
    id: str
    status: str  # "done" or "failed"
    candidates: list[Candidate] = field(default_factory=list)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "id": self.id, "status": self.status, "error": self.error,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "candidates": [c.to_json() for c in self.candidates]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(key=data["key"], id=data["id"], status=data["status"], error=data.get("error"),
                   prompt_tokens=int(data.get("prompt_tokens", 0)), completion_tokens=int(data.get("completion_tokens", 0)),
                   candidates=[Candidate.from_json(c) for c in data.get("candidates", [])], cached=True)


class ShardCache:
    def __init__(self, store: Store, prefix: str) -> None:
        self.store, self.prefix = store, prefix.rstrip("/")
        self.session = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.seq = 0
        self.unreadable = 0

    def load(self) -> dict[str, Outcome]:
        """Every saved outcome by cache key (the first copy wins if two runs saved one)."""
        found: dict[str, Outcome] = {}
        for key in sorted(self.store.list_keys(self.prefix + "/")):
            if not key.rsplit("/", 1)[-1].startswith("shard-"):
                continue
            for line in self.store.get_text(key).splitlines():
                if not line.strip():
                    continue
                try:
                    outcome = Outcome.from_json(json.loads(line))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    self.unreadable += 1
                    log.warning("%s: skipping an unreadable line (%s); that record will be asked again", key, exc)
                    continue
                if outcome.status == "done":
                    found.setdefault(outcome.key, outcome)
        return found

    def append(self, outcomes: list[Outcome]) -> str | None:
        done = [o for o in outcomes if o.status == "done"]
        if not done:
            return None
        self.seq += 1
        key = f"{self.prefix}/shard-{self.session}-{self.seq:04d}.jsonl"
        self.store.put_text(key, "".join(json.dumps(o.to_json(), ensure_ascii=False) + "\n" for o in done))
        return key
