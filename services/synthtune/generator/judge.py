"""LLM-judge quality score (1-10) against a rubric, for the generation filter."""

from __future__ import annotations

import re
from typing import Any

from synthtune.llm.chat import ChatBackend, ChatRequest

RUBRIC = (
    "Rate the answer to the maintenance question from 1 (useless or wrong) to 10 (correct, specific, "
    "safe, actionable steps). Consider correctness, specificity, safety and clarity. "
    "Reply with the number only."
)
_SCORE = re.compile(r"\b(10|[1-9])(?:\.\d+)?\b")


def parse_score(text: str) -> float | None:
    match = _SCORE.search(text)
    return float(match.group(1)) if match else None


def score_examples(backend: ChatBackend, examples: list[dict[str, Any]]) -> list[float | None]:
    requests = []
    for ex in examples:
        user = next((m["content"] for m in ex["messages"] if m["role"] == "user"), "")
        answer = next((m.get("content") or "" for m in reversed(ex["messages"]) if m["role"] == "assistant"), "")
        requests.append(ChatRequest(messages=[
            {"role": "system", "content": RUBRIC},
            {"role": "user", "content": f"Question:\n{user}\n\nAnswer:\n{answer}\n\nScore (1-10):"},
        ], temperature=0.0, max_tokens=8))
    return [parse_score(r.text) if r.ok else None for r in backend.complete(requests)]
