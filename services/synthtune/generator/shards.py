"""Results appended to the store in shards, so a killed run resumes without re-asking finished items."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from synthtune.store import Store


class ShardLog:
    """``work/generate/<artifact id>/shard-*.jsonl``: one line per finished item."""

    def __init__(self, store: Store, art_id: str) -> None:
        self.store = store
        self.prefix = f"work/generate/{art_id}"

    def load(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        for key in self.store.list_keys(self.prefix + "/"):
            if not key.endswith(".jsonl"):
                continue
            for line in self.store.get_text(key).splitlines():
                if line.strip():
                    entry = json.loads(line)
                    done[entry["key"]] = entry
        return done

    def append(self, entries: list[dict[str, Any]]) -> None:
        if entries:
            name = f"{self.prefix}/shard-{time.time_ns()}-{uuid.uuid4().hex[:6]}.jsonl"
            self.store.put_text(name, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))

    def clear(self) -> None:
        self.store.backend.delete_prefix(self.prefix)
