"""The LLM-judge filter's scoring step: a rubric score 1-10 per candidate, with one repair retry."""

from __future__ import annotations

from typing import Any

from synthtune.generator.methods.base import Candidate, Plan, RecordFailed
from synthtune.generator.templates import PromptSet
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.llm.structured import parse_score, repair_request
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
    _fail_on_error(results)
    parsed = [parse_score(r.text) for r in results]
    retry = [i for i, (score, _) in enumerate(parsed) if score is None]
    if retry:
        again: list[ChatResult] = yield [repair_request(asks[i], results[i].text, schema) for i in retry]
        _fail_on_error(again)
        for i, result in zip(retry, again, strict=True):
            parsed[i] = parse_score(result.text)
    for c, (score, reason) in zip(todo, parsed, strict=True):
        c.score = score
        c.detail = reason or c.detail
    return candidates


def _fail_on_error(results: list[ChatResult]) -> None:
    for result in results:
        if not result.ok:
            raise RecordFailed(f"judge: {result.error}")
