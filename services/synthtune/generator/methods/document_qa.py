"""document_qa: grounded question -> answer pairs from manual chunks; unsupported answers are rejected."""

from __future__ import annotations

from typing import Any

from synthtune.errors import InvalidInput
from synthtune.generator.methods import register
from synthtune.generator.methods.base import Candidate, Method, Plan
from synthtune.generator.text import support


@register
class DocumentQA(Method):
    name = "document_qa"
    record_type = "chunk"
    needs_text = True

    def read_options(self) -> None:
        self.min_support = float(self.options.get("min_support", 0.6))
        if not 0.0 <= self.min_support <= 1.0:
            raise InvalidInput(f"method document_qa: options.min_support must be in [0, 1], got {self.min_support}")

    def plan(self, record: dict[str, Any]) -> Plan:
        text = str(record["text"])
        angles = list(self.prompts.get("angles", []))
        variants = [f"p{k}" for k in range(self.pairs)]
        angle_of = {v: (angles[k % len(angles)] if self.pairs > 1 and angles else "") for k, v in enumerate(variants)}
        asks = [self.ask(record, f"{v}.q", self.prompts.render("question", text=text, angle=angle_of[v])) for v in variants]
        results = yield asks
        done: list[Candidate] = []
        todo: list[tuple[str, str]] = []
        for v, result, request in zip(variants, results, asks, strict=True):
            question, reason = self.reply(result, request)
            if reason:
                done.append(self.candidate(record, v, question, "", reject=f"question_{reason}"))
            else:
                todo.append((v, question))
        answers = [self.ask(record, f"{v}.a", self.prompts.render("answer", text=text, question=q), temperature=0.0)
                   for v, q in todo]
        if answers:
            results = yield answers
            refusal = str(self.prompts.get("not_answered", "")).strip().lower()
            for (v, question), result, request in zip(todo, results, answers, strict=True):
                answer, reason = self.reply(result, request)
                c = self.candidate(record, v, question, answer, reject=reason and f"answer_{reason}", info={"angle": angle_of[v]})
                if not reason:
                    if refusal and answer.strip().rstrip(".").lower() == refusal:
                        c.reject = "not_in_chunk"
                    else:
                        c.score = round(support(answer, text), 3)
                        if c.score < self.min_support:
                            c.reject, c.detail = "unsupported_by_chunk", f"{c.score:.0%} of the answer's words are in its chunk"
                done.append(c)
        return sorted(done, key=lambda c: variants.index(c.variant["name"]))
