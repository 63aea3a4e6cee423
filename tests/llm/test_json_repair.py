"""The one JSON repair retry (judge scores and event_scenario's function calls both use it), over the openai backend."""

from __future__ import annotations

import json
from typing import Any

import pytest
from loopback_server import LoopbackOpenAI

from synthtune.llm.chat import ChatBackend, ChatRequest, ChatResult, make_backend
from synthtune.llm.structured import Parsed, parse_json, parse_with_repair
from synthtune.spec.generate import ModelEndpointSpec

pytestmark = pytest.mark.integration

SCHEMA = {"title": "grade", "type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}


def grade(result: ChatResult) -> int | None:
    value = parse_json(result.text)
    return value["score"] if isinstance(value, dict) and isinstance(value.get("score"), int) else None


def asked_to_repair(body: dict[str, Any]) -> bool:
    return len(body["messages"]) > 1


def run_step(backend: ChatBackend, prompts: list[str], **options: Any) -> list[Parsed[int]]:
    """What a generation plan does: ask, then let the repair step ask again and hand back its results."""
    asks = [ChatRequest(messages=[{"role": "user", "content": p}], seed=3, max_tokens=50, key=p) for p in prompts]
    step = parse_with_repair(asks, backend.complete(asks), grade, **options)
    try:
        batch = next(step)
        while True:
            batch = step.send(backend.complete(batch))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def teacher_backend(server: LoopbackOpenAI) -> ChatBackend:
    return make_backend(ModelEndpointSpec(backend="openai", model="loopback", base_url=server.base_url, backoff_s=0.01))


def test_broken_json_then_valid_json_is_repaired_with_one_more_call() -> None:
    def teacher(body):  # type: ignore[no-untyped-def]
        if asked_to_repair(body):
            return '{"score": 7}'
        return '{"score": 7,' if body["messages"][0]["content"] != "clear" else 'Score follows. {"score": 9}'

    with LoopbackOpenAI(teacher) as server:
        backend = teacher_backend(server)
        try:
            parsed = run_step(backend, ["broken", "clear", "also broken"], schema=SCHEMA)
        finally:
            backend.close()
    assert [p.value for p in parsed] == [7, 9, 7] and [p.failure for p in parsed] == [None, None, None]
    assert len(server.requests) == 3 + 2  # the two broken replies were asked once more; the clear one was not
    repair = next(b for b in server.requests if b["messages"][0]["content"] == "broken" and asked_to_repair(b))
    # The repair shows the model its own broken reply, asks for JSON at temperature 0, and keeps the schema and seed.
    assert repair["messages"][1] == {"role": "assistant", "content": '{"score": 7,'}
    assert "not valid JSON" in repair["messages"][2]["content"] and json.dumps(SCHEMA) in repair["messages"][2]["content"]
    assert repair["temperature"] == 0.0 and repair["seed"] == 3 and repair["max_tokens"] == 50
    assert repair["response_format"]["json_schema"]["schema"] == SCHEMA
    assert parsed[0].repair is not None and parsed[1].repair is None


def test_a_reply_that_never_repairs_is_asked_once_more_only_and_says_why() -> None:
    def teacher(body):  # type: ignore[no-untyped-def]
        if asked_to_repair(body):
            return "Seven out of ten, I think."
        return "" if body["messages"][0]["content"] == "silent" else "I would rate it highly."

    instruction = 'Reply with only one JSON object: {"score": <1-10>}.'
    with LoopbackOpenAI(teacher) as server:
        backend = teacher_backend(server)
        try:
            parsed = run_step(backend, ["prose"], instruction=instruction)
            silent = run_step(backend, ["silent"])
        finally:
            backend.close()
    assert len(server.requests) == 2 + 2  # one repair each, never a second
    assert parsed[0].value is None and silent[0].value is None
    assert parsed[0].failure == "no usable JSON in the reply, even after one repair (last reply: 'Seven out of ten, I think.')"
    prose_repair, silent_repair = server.requests[1]["messages"], server.requests[3]["messages"]
    # The caller's own instruction replaces the default wording.
    assert prose_repair[1]["content"] == "I would rate it highly." and prose_repair[2]["content"] == instruction
    # An empty reply is shown to the model as such, and the default wording asks for JSON.
    assert silent_repair[1]["content"] == "(no reply)" and silent_repair[2]["content"].startswith("That reply was not valid JSON.")


def test_a_failed_request_is_the_callers_to_handle_not_repaired() -> None:
    class Failed(Exception):
        pass

    def strict(result: ChatResult) -> int | None:
        if not result.ok:
            raise Failed(result.error)
        return grade(result)

    asks = [ChatRequest(messages=[{"role": "user", "content": "q"}])]
    step = parse_with_repair(asks, [ChatResult(finish_reason="error", error="HTTP 500: boom")], strict)
    with pytest.raises(Failed, match="HTTP 500"):
        next(step)
