"""Tolerant JSON parsing, tool calls from text, language names."""

from __future__ import annotations

import json

import pytest

from synthtune.errors import InvalidInput
from synthtune.llm.language import language_code
from synthtune.llm.structured import parse_json, parse_score, parse_tool_calls


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


def test_language_names() -> None:
    assert language_code("German") == "de" and language_code("it") == "it"
    with pytest.raises(InvalidInput, match="unknown language 'Klingonish'"):
        language_code("Klingonish")


@pytest.mark.parametrize(("text", "number_only", "parsed"), [
    ('{"score": 8, "reason": "names the part"}', False, (8.0, "names the part")),
    ("The answer is fine. Score: 7.5", False, (7.5, "")),
    ("8/10 - correct", False, (8.0, "")),
    ('{"score": 0}', False, (None, "")),
    ("no number", False, (None, "")),
    ("Score: 9/10", True, (9.0, "")),
    ("I'd give it 7", True, (None, "")),
    ("10/10 great", True, (None, "")),
])
def test_one_score_parser_for_both_judges(text, number_only, parsed) -> None:  # type: ignore[no-untyped-def]
    assert parse_score(text, number_only=number_only) == parsed
