"""Structured replies: tolerant JSON parsing, tool calls from plain text, and one repair retry."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from synthtune.llm.chat import ChatRequest, ChatResult

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
T = TypeVar("T")


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


def repair_request(request: ChatRequest, bad_reply: str, schema: dict[str, Any] | None = None,
                   instruction: str | None = None) -> ChatRequest:
    """The follow-up that asks the model to restate its reply as valid JSON (the one repair retry).

    ``instruction`` replaces the default wording (a caller that wants a particular object shape)."""
    wanted = f" matching this JSON Schema:\n{json.dumps(schema)}" if schema else ""
    ask = instruction or f"That reply was not valid JSON. Reply again with only one JSON object{wanted}. No prose, no code fences."
    messages = [
        *request.messages,
        {"role": "assistant", "content": bad_reply or "(no reply)"},
        {"role": "user", "content": ask},
    ]
    return ChatRequest(messages=messages, temperature=0.0, max_tokens=request.max_tokens, seed=request.seed,
                       json_schema=schema, key=request.key)


@dataclass
class Parsed(Generic[T]):
    """One reply after the repair retry: the parsed value (None when even the repair did not parse)."""

    value: T | None
    reply: ChatResult  # the reply the value came from: the repair's when one was sent
    repair: ChatRequest | None = None  # the repair request, when the first reply did not parse

    @property
    def failure(self) -> str | None:
        """Why there is no value, for a rejects file; None when there is one."""
        if self.value is not None:
            return None
        return f"no usable JSON in the reply, even after one repair (last reply: {self.reply.text.strip()[:200]!r})"


def parse_with_repair(asks: list[ChatRequest], results: list[ChatResult], parse: Callable[[ChatResult], T | None], *,
                      schema: dict[str, Any] | None = None, instruction: str | None = None,
                      ) -> Generator[list[ChatRequest], list[ChatResult], list[Parsed[T]]]:
    """Each reply parsed; the ones that do not parse are asked once more, in one batch, to restate it as JSON.

    A plan step (``yield from``): it yields the repair requests, receives their results and returns one
    ``Parsed`` per ask, in order. ``parse`` sees every reply, failed requests included (raise there to
    fail the caller) and returns None for a reply it cannot use; one repair, never more."""
    parsed = [Parsed(parse(result), result) for result in results]
    retry = [i for i, p in enumerate(parsed) if p.value is None]
    if not retry:
        return parsed
    repairs = [repair_request(asks[i], results[i].text, schema, instruction) for i in retry]
    again: list[ChatResult] = yield repairs
    for i, repair, result in zip(retry, repairs, again, strict=True):
        parsed[i] = Parsed(parse(result), result, repair)
    return parsed


# A rubric reply that is the number itself: optionally "Score:" before it and "/10" after it, then
# nothing but punctuation or a new line.
_SCORE_ONLY = re.compile(r"^\s*(?:score\s*[:=]?\s*)?(10|[1-9])(?:\s*/\s*10)?\s*[.!]?\s*(?:\n|$)", re.I)
# A score somewhere in prose: "score: 7.5" or "8/10".
_SCORE_IN_PROSE = re.compile(r"\bscore\b\W{0,5}(\d{1,2}(?:\.\d+)?)|(\d{1,2}(?:\.\d+)?)\s*/\s*10\b", re.I)


def parse_score(text: str, number_only: bool = False) -> tuple[float | None, str]:
    """(score from 1 to 10, or None; the judge's reason, or "") from a judge's reply.

    ``number_only``: the reply must be an integer score and nothing else (what a rubric asks for;
    prose first, 0, 11, 7.5 or "seven" give None). Otherwise a JSON ``{"score", "reason"}``, then a
    "score: N" or "N/10" anywhere in the text, counts."""
    if number_only:
        match = _SCORE_ONLY.match(text or "")
        return (float(match.group(1)) if match else None), ""
    value = parse_json(text)
    if isinstance(value, dict) and isinstance(value.get("score"), int | float | str):
        try:
            score = float(value["score"])
        except ValueError:
            score = None
        if score is not None and 1 <= score <= 10:
            return score, str(value.get("reason") or "")
    match = _SCORE_IN_PROSE.search(text or "")
    if match:
        score = float(match.group(1) or match.group(2))
        if 1 <= score <= 10:
            return score, ""
    return None, ""
