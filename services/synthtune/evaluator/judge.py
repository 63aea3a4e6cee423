"""LLM judge, blind to model names: pairwise (both orders; disagreeing orders are a tie) and 1-10 rubric scores.

Off-format replies are counted as invalid, never as a win or a score.
"""

from __future__ import annotations

import re
from typing import Any

from synthtune.llm.chat import ChatBackend, ChatRequest
from synthtune.llm.structured import parse_score

SYSTEM = (
    "You compare two answers to a maintenance question against a reference answer from the resolved work "
    "order. Prefer the answer that is correct, specific and actionable. Reply with exactly one of: A, B, TIE."
)
_VERDICT = re.compile(r"^\W*(A|B|TIE)\b", re.I)


def parse_verdict(text: str) -> str | None:
    match = _VERDICT.search(text.strip())
    return match.group(1).upper() if match else None


def _request(question: str, reference: str, first: str, second: str) -> ChatRequest:
    body = f"Question:\n{question}\n\nReference answer:\n{reference}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\nWhich is better? (A, B or TIE)"
    return ChatRequest(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}], temperature=0.0, max_tokens=8)


def combine(tuned_first: str | None, tuned_second: str | None) -> str:
    """Tuned is A in the first order and B in the second; a win must hold in both orders."""
    if tuned_first is None or tuned_second is None:
        return "invalid"
    first = {"A": "win", "B": "loss", "TIE": "tie"}[tuned_first]
    second = {"B": "win", "A": "loss", "TIE": "tie"}[tuned_second]
    return first if first == second else "tie"


def judge_pairs(backend: ChatBackend, items: list[dict[str, Any]]) -> list[str]:
    """The tuned model's outcome per item ("win", "loss", "tie" or "invalid"); both orders asked in one batch.

    items: {question, reference, tuned, base}."""
    requests = []
    for it in items:
        requests.append(_request(it["question"], it["reference"], it["tuned"], it["base"]))
        requests.append(_request(it["question"], it["reference"], it["base"], it["tuned"]))
    results = backend.complete(requests)
    verdicts = []
    for i in range(len(items)):
        a = parse_verdict(results[2 * i].text) if results[2 * i].ok else None
        b = parse_verdict(results[2 * i + 1].text) if results[2 * i + 1].ok else None
        verdicts.append(combine(a, b))
    return verdicts


def tally(verdicts: list[str]) -> dict[str, Any]:
    wins, losses, ties, invalid = (verdicts.count(outcome) for outcome in ("win", "loss", "tie", "invalid"))
    decided = wins + losses + ties
    return {"wins": wins, "losses": losses, "ties": ties, "invalid": invalid,
            # No valid verdict at all is no evidence either way: null, not 0.
            "win_rate": (wins + 0.5 * ties) / decided if decided else None}


RUBRIC_SYSTEM = (
    "You grade one answer to a maintenance question against a reference answer from the resolved work order. "
    "Score it from 1 to 10: 10 = correct, specific and actionable, agreeing with the reference; 5 = partly right or vague; "
    "1 = wrong, empty, unsafe or off-topic. Reply with only the number."
)
def rubric_score(text: str) -> int | None:
    """A 1-10 integer score, or None for anything off-format (prose first, 0, 11, 7.5, "seven")."""
    score, _ = parse_score(text, number_only=True)
    return None if score is None else int(score)


def _rubric_request(question: str, reference: str, answer: str) -> ChatRequest:
    body = f"Question:\n{question}\n\nReference answer:\n{reference}\n\nAnswer to grade:\n{answer}\n\nScore (1-10):"
    return ChatRequest(messages=[{"role": "system", "content": RUBRIC_SYSTEM}, {"role": "user", "content": body}], temperature=0.0, max_tokens=8)


def rubric_scores(backend: ChatBackend, items: list[dict[str, Any]]) -> list[int | None]:
    """items: {question, reference, answer}; one score per item, None where the judge answered off-format or failed."""
    results = backend.complete([_rubric_request(it["question"], it["reference"], it["answer"]) for it in items])
    return [rubric_score(r.text) if r.ok else None for r in results]


def summarize_scores(scores: list[int | None]) -> dict[str, Any]:
    """``mean`` of the valid scores (None when there is none), ``n`` valid scores, ``invalid`` off-format or failed replies."""
    valid = [s for s in scores if s is not None]
    return {"mean": sum(valid) / len(valid) if valid else None, "n": len(valid), "invalid": len(scores) - len(valid)}


def run_judge(spec: Any, items: list[Any], results: dict[str, Any]) -> dict[str, Any]:
    """Pairwise verdicts (``judge``) and rubric scores (``judge_scores``) on each model's first answer; the judge
    sees the question, the reference and anonymous answers, never a model's name."""
    from synthtune.llm.chat import make_backend

    ev = spec.evaluate
    first = {(r.name, row["id"]): row["prediction"] for r in results.values() for row in r.rows if row["sample"] == 0}
    names = list(results)
    out: dict[str, Any] = {}
    backend = make_backend(ev.judge, spec.base_dir)
    try:
        if ev.judge.enabled and len(names) > 1:
            out["judge"] = {}
            for name in names[1:]:
                pairs = [{"question": it.question, "reference": it.reference, "tuned": first[(name, it.id)], "base": first[("base", it.id)]}
                         for it in items]
                out["judge"][name] = tally(judge_pairs(backend, pairs))
        if ev.judge.rubric:
            out["judge_scores"] = {}
            for name in names:
                answers = [{"question": it.question, "reference": it.reference, "answer": first[(name, it.id)]} for it in items]
                out["judge_scores"][name] = summarize_scores(rubric_scores(backend, answers))
    finally:
        backend.close()
    return out
