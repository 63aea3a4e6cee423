"""Quality filters on generated examples: length, refusals, prompt copies, dedup, decontamination, judge."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from synthtune.spec.generate import FilterSpec

REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) (?:sorry|unable|not able)|i can(?:no|')t (?:help|assist|provide)|as an ai\b|as a language model)", re.I
)
GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening))\b[\s,!]", re.I)
_WORD = re.compile(r"\w+")


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class Decontaminator:
    """Flags text sharing any n-gram with the held-out test records (questions or references)."""

    def __init__(self, test_texts: Iterable[str], n: int) -> None:
        self.n = n
        self.index: set[tuple[str, ...]] = set()
        for text in test_texts:
            self.index |= ngrams(text, n)

    def overlap(self, text: str) -> int:
        return len(ngrams(text, self.n) & self.index)


def _texts(example: dict[str, Any]) -> tuple[str, str]:
    msgs = example["messages"]
    user = next((m["content"] for m in msgs if m["role"] == "user"), "")
    answer = next((m.get("content") or "" for m in reversed(msgs) if m["role"] == "assistant"), "")
    return user, answer


def check_example(example: dict[str, Any], spec: FilterSpec, prompt_texts: list[str], decon: Decontaminator | None) -> str | None:
    """The reason to reject ``example``, or None to keep it."""
    question, answer = _texts(example)
    has_call = any(m.get("tool_calls") for m in example["messages"])
    if not has_call and len(answer) < spec.min_chars:
        return f"answer too short ({len(answer)} < {spec.min_chars} characters)"
    if len(answer) > spec.max_chars:
        return f"answer too long ({len(answer)} > {spec.max_chars} characters)"
    if len(question) < 8:
        return "question too short"
    if spec.refusals:
        for label, text in (("question", question), ("answer", answer)):
            if REFUSAL.search(text):
                return f"refusal in the {label}"
            if GREETING.search(text):
                return f"greeting in the {label}"
    for prompt in prompt_texts:
        if len(answer) > 40 and answer.strip() in prompt:
            return "answer copies the prompt"
    if decon is not None:
        hits = decon.overlap(question + " " + answer)
        if hits:
            return f"contaminated: shares {hits} {decon.n}-gram(s) with the test split"
    return None


def near_duplicate_questions(questions: list[str], threshold: float) -> list[int]:
    from synthtune.llm.similarity import minhash_groups

    return minhash_groups(questions, threshold)
