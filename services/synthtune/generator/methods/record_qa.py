"""record_qa: the thesis's two-role method, a technician's question then the expert's answer."""

from __future__ import annotations

from typing import Any

from synthtune.generator.methods import register
from synthtune.generator.methods.base import Candidate, Method, Plan


@register
class RecordQA(Method):
    name = "record_qa"
    required_fields = ("problem", "solution")

    def plan(self, record: dict[str, Any]) -> Plan:
        facts = self.record_facts(record)
        angles = list(self.prompts.get("angles", []))
        variants = [f"p{k}" for k in range(self.pairs)]
        # One pair asks plainly; more pairs ask from different angles so they do not repeat.
        angle_of = {v: (angles[k % len(angles)] if self.pairs > 1 and angles else "") for k, v in enumerate(variants)}
        asks = [self.ask(record, f"{v}.q", self.prompts.render("question", angle=angle_of[v], **facts)) for v in variants]
        results = yield asks
        questions = {v: self.reply(r, a) for v, r, a in zip(variants, results, asks, strict=True)}
        done: list[Candidate] = []
        todo = []
        for v in variants:
            text, reason = questions[v]
            if reason:
                done.append(self.candidate(record, v, text, "", reject=f"question_{reason}", info={"angle": angle_of[v]}))
            else:
                todo.append(v)
        answers = [self.ask(record, f"{v}.a", self.prompts.render("answer", question=questions[v][0], **facts)) for v in todo]
        if answers:
            results = yield answers
            for v, result, request in zip(todo, results, answers, strict=True):
                text, reason = self.reply(result, request)
                done.append(self.candidate(record, v, questions[v][0], text, reject=reason and f"answer_{reason}",
                                           info={"angle": angle_of[v]}))
        return sorted(done, key=lambda c: variants.index(c.variant["name"]))
