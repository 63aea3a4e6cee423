"""The LLM-judge filter's scoring step: a rubric score 1-10 per candidate, with one repair retry."""

from __future__ import annotations

from typing import Any

from synthtune.generator.methods.base import Candidate, Plan, RecordFailed
from synthtune.generator.templates import PromptSet
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.llm.structured import parse_score, parse_with_repair
from synthtune.records import reference_for_record


def source_facts(record: dict[str, Any]) -> str:
    if record.get("type") in ("chunk", "episode"):
        return str(record.get("text") or "")[:3000]
    return reference_for_record(record)


def judge_plan(prompts: PromptSet, candidates: list[Candidate], record: dict[str, Any]) -> Plan:
    """Score every candidate the method kept; scores land on the candidates, rejects happen later."""
    todo = [c for c in candidates if c.reject is None]
    if not todo:
        return candidates
    schema = prompts.get("schema")
    asks = [ChatRequest(messages=[{"role": "user", "content": prompts.render(
                "judge", source=source_facts(record), question=c.question, answer=c.answer)}],
                        temperature=0.0, max_tokens=200, seed=0, json_schema=schema, key=f"{c.id}.judge")
            for c in todo]
    results: list[ChatResult] = yield asks
    parsed = yield from parse_with_repair(asks, results, _score, schema=schema)
    for c, p in zip(todo, parsed, strict=True):
        if p.value is None:
            c.score, c.detail = None, p.failure or ""
        else:
            c.score, reason = p.value
            c.detail = reason or c.detail
    return candidates


def _score(result: ChatResult) -> tuple[float, str] | None:
    """(score, reason) from one judge reply; None when it has no score; a failed request fails the record."""
    if not result.ok:
        raise RecordFailed(f"judge: {result.error}")
    score, reason = parse_score(result.text)
    return None if score is None else (score, reason)
