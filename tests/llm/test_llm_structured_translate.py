"""Tolerant JSON parsing with one repair retry, tool calls from text, language names."""

from __future__ import annotations

import json

import pytest

from synthtune.errors import InvalidInput
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.llm.language import language_code
from synthtune.llm.structured import complete_json, parse_json, parse_tool_calls


class Canned:
    """A backend replying from a function of the last user message; records every request."""

    def __init__(self, reply) -> None:  # type: ignore[no-untyped-def]
        self.reply, self.model, self.requests = reply, "canned", []

    def complete(self, requests, progress=None):  # type: ignore[no-untyped-def]
        self.requests.extend(requests)
        return [self.reply(r) for r in requests]

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("text", "value"), [
    ('{"a": 1}', {"a": 1}),
    ('Here you go:\n```json\n{"a": [1, 2,],}\n```\nThanks', {"a": [1, 2]}),
    ('The result is {"a": "x}y", "b": {"c": 2}} as asked.', {"a": "x}y", "b": {"c": 2}}),
    ("[1, 2]", [1, 2]),
    ("no json here", None),
    ("", None),
])
def test_parse_json_is_tolerant(text, value) -> None:  # type: ignore[no-untyped-def]
    assert parse_json(text) == value


def test_tool_calls_from_text() -> None:
    calls = parse_tool_calls('<tool_call>{"name": "STOP", "arguments": {"target": "c1"}}</tool_call>')
    assert calls[0]["type"] == "function" and calls[0]["function"]["name"] == "STOP"
    assert json.loads(calls[0]["function"]["arguments"]) == {"target": "c1"}
    assert parse_tool_calls('{"function": {"name": "GO", "arguments": "{}"}}')[0]["function"]["arguments"] == "{}"
    assert parse_tool_calls("stop the line") == []


def test_complete_json_repairs_once() -> None:
    def reply(request: ChatRequest) -> ChatResult:
        last = request.messages[-1]["content"]
        if "not valid JSON" in last:
            return ChatResult(text='{"score": 4}' if "first" in request.messages[0]["content"] else "still prose")
        return ChatResult(text="score is high")

    backend = Canned(reply)
    out = complete_json(backend, [ChatRequest(messages=[{"role": "user", "content": m}]) for m in ("first", "second")],
                        valid=lambda v: isinstance(v, dict) and "score" in v)
    assert [v for v, _ in out] == [{"score": 4}, None]
    assert len(backend.requests) == 4  # two asks, one repair each, no more


def test_language_names() -> None:
    assert language_code("German") == "de" and language_code("it") == "it"
    with pytest.raises(InvalidInput, match="unknown language 'Klingonish'"):
        language_code("Klingonish")
