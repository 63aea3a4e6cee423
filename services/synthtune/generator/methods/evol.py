"""evol: Evol-Instruct in-depth evolving of seed questions (deepen, constraints, concretise), then answers."""

from __future__ import annotations

from typing import Any

from synthtune.errors import InvalidInput
from synthtune.generator.methods import register
from synthtune.generator.methods.base import Candidate, Method, Plan
from synthtune.generator.text import words
from synthtune.records import question_for_record


@register
class Evol(Method):
    name = "evol"
    required_fields = ("problem", "solution")

    def read_options(self) -> None:
        self.instructions: dict[str, str] = dict(self.prompts.get("instructions", {}))
        self.steps = list(self.options.get("steps", list(self.instructions)))
        self.rounds = int(self.options.get("rounds", 1))
        unknown = [s for s in self.steps if s not in self.instructions]
        if unknown or not self.steps or self.rounds < 1:
            raise InvalidInput(
                f"method evol: options.steps must name some of {', '.join(self.instructions)} (got {self.steps}) "
                f"and options.rounds must be >= 1 (got {self.rounds})"
            )

    def plan(self, record: dict[str, Any]) -> Plan:
        facts = self.record_facts(record)
        seed_question = question_for_record(record)
        variants = [f"p{k}" for k in range(self.pairs)]
        # Each pair evolves along its own path of steps, so pairs differ even at temperature 0.
        paths = {v: [self.steps[(k + r) % len(self.steps)] for r in range(self.rounds)] for k, v in enumerate(variants)}
        questions = dict.fromkeys(variants, seed_question)
        failed: dict[str, str] = {}
        for r in range(self.rounds):
            live = [v for v in variants if v not in failed]
            if not live:
                break
            asks = [self.ask(record, f"{v}.e{r}", self.prompts.render(
                "evolve", question=questions[v], instruction=self.instructions[paths[v][r]])) for v in live]
            for v, result, request in zip(live, (yield asks), asks, strict=True):
                text, reason = self.reply(result, request)
                if not reason and words(text) == words(questions[v]):
                    reason = "unchanged"
                if reason:
                    failed[v] = f"evolution_{reason}"
                questions[v] = text or questions[v]
        done: list[Candidate] = [
            self.candidate(record, v, questions[v], "", reject=failed[v], info={"steps": paths[v], "seed_question": seed_question})
            for v in variants if v in failed
        ]
        live = [v for v in variants if v not in failed]
        answers = [self.ask(record, f"{v}.a", self.prompts.render("answer", question=questions[v], **facts)) for v in live]
        if answers:
            for v, result, request in zip(live, (yield answers), answers, strict=True):
                text, reason = self.reply(result, request)
                done.append(self.candidate(record, v, questions[v], text, reject=reason and f"answer_{reason}",
                                           info={"steps": paths[v], "seed_question": seed_question}))
        return sorted(done, key=lambda c: variants.index(c.variant["name"]))
