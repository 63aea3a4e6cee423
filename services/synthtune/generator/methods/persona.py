"""persona: the same record asked by different people (new operator, technician, shift supervisor)."""

from __future__ import annotations

from typing import Any

from synthtune.errors import InvalidInput
from synthtune.generator.methods import register
from synthtune.generator.methods.base import Candidate, Method, Plan
from synthtune.llm.language import language_code


@register
class Persona(Method):
    name = "persona"
    required_fields = ("problem", "solution")

    def read_options(self) -> None:
        shipped: dict[str, str] = dict(self.prompts.get("personas", {}))
        chosen = self.options.get("personas") or list(shipped)
        self.personas: list[tuple[str, str]] = []
        for item in chosen:
            name, description = (item.get("name"), item.get("description")) if isinstance(item, dict) else (item, shipped.get(item))
            if not name or not description:
                raise InvalidInput(
                    f"method persona: persona {item!r} needs a description (shipped personas: {', '.join(shipped)}; "
                    "or give {name: ..., description: ...})"
                )
            self.personas.append((str(name), str(description)))
        # None means "the teacher's default language": no instruction and no language check.
        self.languages: list[str | None] = list(self.options.get("languages") or [None])
        self.codes = {lang: language_code(lang) for lang in self.languages if lang}

    def plan(self, record: dict[str, Any]) -> Plan:
        facts = self.record_facts(record)
        variants = []
        for p, (persona, description) in enumerate(self.personas):
            for language in self.languages:
                for k in range(self.pairs):
                    tag = f"{p}{('-' + self.codes[language]) if language else ''}" + (f"-{k}" if self.pairs > 1 else "")
                    variants.append((f"persona{tag}", persona, description, language))
        info = {v: {"persona": persona, "language": language} for v, persona, _, language in variants}
        asks = [self.ask(record, f"{v}.q", self.prompts.render("question", persona=persona, description=description,
                                                               language=language, **facts))
                for v, persona, description, language in variants]
        done: list[Candidate] = []
        todo = []
        for (v, persona, description, language), result, request in zip(variants, (yield asks), asks, strict=True):
            question, reason = self.reply(result, request)
            if reason:
                done.append(self.candidate(record, v, question, "", reject=f"question_{reason}", info=info[v],
                                           language=self.codes.get(language) if language else None))
            else:
                todo.append((v, persona, description, language, question))
        answers = [self.ask(record, f"{v}.a", self.prompts.render("answer", persona=persona, description=description,
                                                                  language=language, question=q, **facts))
                   for v, persona, description, language, q in todo]
        if answers:
            for (v, _, _, language, question), result, request in zip(todo, (yield answers), answers, strict=True):
                text, reason = self.reply(result, request)
                done.append(self.candidate(record, v, question, text, reject=reason and f"answer_{reason}", info=info[v],
                                           language=self.codes.get(language) if language else None))
        order = [v for v, *_ in variants]
        return sorted(done, key=lambda c: order.index(c.variant["name"]))
