"""Quality filters over every method's candidates; each reject carries id, reason and score.

Order: the method's own verdict, length, refusal, greeting, repetition, grounding in the
record, language, judge score, then decontamination and dedup across the corpus (so a
contaminated example never claims a dedup slot). Filters run on saved candidates, so changing a threshold re-asks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synthtune.generator.decontam import Decontaminator
from synthtune.generator.dedup import find_duplicates
from synthtune.generator.methods.base import Candidate
from synthtune.generator.text import GREETING, REFUSAL, content_words
from synthtune.llm.language import detect_language, language_code
from synthtune.records import field_text, repetition_loop
from synthtune.spec.generate import FilterSpec


@dataclass
class Verdict:
    reason: str
    score: float | None = None
    detail: str = ""


@dataclass
class FilterResult:
    kept: list[Candidate] = field(default_factory=list)
    rejected: list[tuple[Candidate, Verdict]] = field(default_factory=list)


def _recall(answer: set[str], source: str) -> float | None:
    """Share of the source's content words (5-letter stems) the answer carries; None when it has none."""
    wanted = {w[:5] for w in content_words(source)}
    return len(wanted & answer) / len(wanted) if wanted else None


def grounding(c: Candidate, record: dict[str, Any], threshold: float) -> Verdict | None:
    """``ungrounded`` when the answer misses its ticket's content or only restates the question."""
    answer = {w[:5] for w in content_words(c.answer)}
    for name in ("solution", "cause", "problem"):
        score = _recall(answer, field_text(record, name))
        if score is not None:
            if score < threshold:
                return Verdict("ungrounded", round(score, 3), f"answer carries {score:.0%} of the record's {name} words, "
                               f"grounding is {threshold:g}")
            break
    new = answer - {w[:5] for w in content_words(c.question)}
    if len(answer) >= 3 and len(new) < 2:
        return Verdict("ungrounded", 0.0, "the answer only restates the question")
    return None


def check_one(c: Candidate, spec: FilterSpec, judge: bool, default_language: str | None,
              record: dict[str, Any] | None = None) -> Verdict | None:
    """The first per-example filter this candidate fails, or None; ``record`` is its ticket, for grounding."""
    if c.reject:
        return Verdict(c.reject, c.score, c.detail)
    answer = c.answer
    if len(answer) < spec.min_chars:
        return Verdict("too_short", len(answer), f"answer has {len(answer)} characters, min_chars is {spec.min_chars}")
    if len(answer) > spec.max_chars:
        return Verdict("too_long", len(answer), f"answer has {len(answer)} characters, max_chars is {spec.max_chars}")
    if spec.refusals:
        if match := REFUSAL.search(answer):
            return Verdict("refusal", None, match.group(0))
        for text in (c.question, answer):
            if match := GREETING.search(text):
                return Verdict("greeting", None, match.group(0))
    if spec.repetitive and repetition_loop(answer):
        return Verdict("repetitive", None, "the answer loops (a passage or sentence repeated)")
    # A pair asked for in another language cannot share the ticket's words; its language check stands in.
    grounded = spec.grounding is not False and record is not None and (record.get("type") or "record") == "record" and not c.language
    if grounded and record is not None and (verdict := grounding(c, record, float(spec.grounding))):
        return verdict
    expected = c.language or default_language
    if expected:
        for text in (c.question, answer):
            found = detect_language(text)
            if found and found[0].split("-")[0] != expected.split("-")[0] and found[1] >= 0.8:
                return Verdict("wrong_language", round(found[1], 3), f"expected {expected}, detected {found[0]}")
    if judge:
        if c.score is None:
            return Verdict("judge_no_score", None, c.detail or "the judge's reply had no score, even after one repair")
        if c.score < spec.min_score:
            return Verdict("judge_score_below_min", c.score, c.detail)
    return None


def apply_filters(candidates: list[Candidate], spec: FilterSpec, judge: bool, test_records: list[dict[str, Any]],
                  sources: dict[str, dict[str, Any]] | None = None, teacher_checks: bool = True) -> tuple[FilterResult, dict[str, Any]]:
    """Kept and rejected candidates, in input order, plus filter statistics.

    ``sources`` maps record id to record (for grounding). ``teacher_checks`` False (a method that asks no
    teacher) runs decontamination alone: the records themselves are the data, prepare already cleaned them."""
    default_language = language_code(spec.language) if spec.language else None
    decontam = Decontaminator(test_records, spec.ngram, spec.ngram_min) if spec.decontaminate else None
    set_items = {str(r["id"]) for r in test_records if r.get("eval_set")}
    verdicts: list[Verdict | None] = []
    for c in candidates:
        record = (sources or {}).get(c.source_ids[0]) if c.source_ids else None
        verdict = check_one(c, spec, judge, default_language, record) if teacher_checks else (Verdict(c.reject, c.score, c.detail) if c.reject else None)
        if verdict is None and decontam is not None:
            hit = decontam.match(c.question + "\n" + c.answer)
            if hit and hit[0] in set_items:
                verdict = Verdict("eval_set_overlap", hit[1], f"shares {spec.ngram}-grams with evaluation set item {hit[0]}")
            elif hit:
                verdict = Verdict("test_overlap", hit[1], f"shares {spec.ngram}-grams with test record {hit[0]}")
        verdicts.append(verdict)
    if teacher_checks:  # dedup last, among the examples every other filter kept
        passed = [k for k, v in enumerate(verdicts) if v is None]
        duplicates = find_duplicates([(candidates[k].id, candidates[k].question, candidates[k].answer) for k in passed], spec.dedup_near)
        for k, dup in zip(passed, duplicates, strict=True):
            if dup:
                verdicts[k] = Verdict(dup[0], dup[1], f"same as {dup[2]}")
    out = FilterResult()
    for c, verdict in zip(candidates, verdicts, strict=True):
        if verdict is None:
            out.kept.append(c)
        else:
            out.rejected.append((c, verdict))
    stats = {"decontam_test_texts_too_short": decontam.skipped_short if decontam else 0}
    return out, stats
