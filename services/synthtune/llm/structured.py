"""Structured replies: tolerant JSON parsing, tool calls from plain text, and one repair retry."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from synthtune.llm.chat import ChatRequest

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _balanced(text: str, start: int) -> str | None:
    """The JSON object/array starting at ``start``, found by bracket matching outside strings."""
    opener = text[start]
    closer = "}" if opener == "{" else "]"
    depth, in_str, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            escaped = ch == "\\" and not escaped
            if ch == '"' and not escaped:
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def parse_json(text: str) -> Any | None:
    """The first JSON value in a model reply (code fences, prose around it, trailing commas tolerated)."""
    if not text or not text.strip():
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        candidate = candidate.strip()
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
        for match in re.finditer(r"[{\[]", candidate):
            block = _balanced(candidate, match.start())
            if block is None:
                continue
            for attempt in (block, _TRAILING_COMMA.sub(r"\1", block)):
                try:
                    return json.loads(attempt)
                except json.JSONDecodeError:
                    continue
    return None


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """OpenAI-format tool calls written as JSON text (``{"name", "arguments"}``, maybe in <tool_call> tags)."""
    tagged = re.findall(r"<tool_call>(.*?)</tool_call>", text, re.S)
    values = [parse_json(t) for t in tagged] if tagged else [parse_json(text)]
    calls = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("function"), dict):
                item = item["function"]
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            args = item.get("arguments", item.get("parameters", {}))
            calls.append({
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": item["name"], "arguments": args if isinstance(args, str) else json.dumps(args)},
            })
    return calls


def repair_request(request: ChatRequest, bad_reply: str, schema: dict[str, Any] | None = None) -> ChatRequest:
    """The follow-up that asks the model to restate its reply as valid JSON (the one repair retry)."""
    wanted = f" matching this JSON Schema:\n{json.dumps(schema)}" if schema else ""
    messages = [
        *request.messages,
        {"role": "assistant", "content": bad_reply},
        {"role": "user", "content": f"That reply was not valid JSON. Reply again with only one JSON object{wanted}. No prose, no code fences."},
    ]
    return ChatRequest(messages=messages, temperature=0.0, max_tokens=request.max_tokens, seed=request.seed,
                       json_schema=schema, key=request.key)
