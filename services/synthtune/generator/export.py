"""Exporters from a ``synthetic`` artifact's ``data.jsonl`` to OpenAI fine-tuning JSONL and Alpaca JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.store import ArtifactRef, Store

FORMATS = ("openai", "alpaca")
_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


def to_openai(example: dict[str, Any]) -> dict[str, Any]:
    """OpenAI chat fine-tuning line: ``messages`` (and ``tools`` for function calling), nothing else."""
    row: dict[str, Any] = {"messages": [{k: m[k] for k in _MESSAGE_KEYS if m.get(k) is not None} for m in example["messages"]]}
    for m in row["messages"]:
        m.setdefault("content", "")
    if example.get("tools"):
        row["tools"] = example["tools"]
    return row


def to_alpaca(example: dict[str, Any]) -> dict[str, Any]:
    """Alpaca record: the first user turn as ``instruction``, the last assistant turn as ``output``."""
    messages = example["messages"]
    users = [m for m in messages if m["role"] == "user"]
    answers = [m for m in messages if m["role"] == "assistant"]
    if not users or not answers:
        raise InvalidInput(f"example {example.get('id', '?')}: needs a user and an assistant message for Alpaca")
    last = answers[-1]
    output = str(last.get("content") or "")
    calls = [json.dumps({"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")})
             for c in last.get("tool_calls") or []]
    output = "\n".join(p for p in (output, *calls) if p)
    system = next((str(m["content"]) for m in messages if m["role"] == "system"), "")
    return {"instruction": str(users[0]["content"]), "input": "", "output": output, "system": system}


def convert(examples: Iterable[dict[str, Any]], fmt: str) -> Iterator[dict[str, Any]]:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r} (use {' or '.join(FORMATS)})")
    convert_one = to_openai if fmt == "openai" else to_alpaca
    return (convert_one(e) for e in examples)


def export_artifact(store: Store, ref: ArtifactRef | str, fmt: str, dest: str | Path) -> int:
    """Write the artifact's examples to ``dest`` (OpenAI: JSONL; Alpaca: one JSON array); returns the count."""
    artifact = store.open(ref)
    if artifact.kind != "synthetic":
        raise InvalidInput(f"export: {artifact.id} is a {artifact.kind!r} artifact, not 'synthetic'")
    rows = list(convert(artifact.iter_jsonl("data.jsonl"), fmt))
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "openai":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(rows)
