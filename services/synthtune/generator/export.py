"""Exporters: OpenAI fine-tuning JSONL and Alpaca JSON from a `synthetic` artifact's data.jsonl."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def to_openai(examples: Iterable[dict[str, Any]], out: Path) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps({"messages": ex["messages"]}, ensure_ascii=False) + "\n")
            n += 1
    return n


def to_alpaca(examples: Iterable[dict[str, Any]], out: Path) -> int:
    rows = []
    for ex in examples:
        msgs = ex["messages"]
        system = next((m["content"] for m in msgs if m["role"] == "system"), "")
        user = next((m["content"] for m in msgs if m["role"] == "user"), "")
        answer = next((m.get("content") or "" for m in reversed(msgs) if m["role"] == "assistant"), "")
        rows.append({"instruction": user, "input": "", "output": answer, "system": system})
    out.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(rows)
