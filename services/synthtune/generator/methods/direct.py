"""direct: no teacher. Each record becomes one instruction pair through a field template: the control
that shows what each teacher-made method adds over the records themselves."""

from __future__ import annotations

from typing import Any

import jinja2

from synthtune.errors import InvalidInput
from synthtune.generator.methods import register
from synthtune.generator.methods.base import Method, Plan

_ENV = jinja2.Environment(undefined=jinja2.ChainableUndefined, autoescape=False)


@register
class Direct(Method):
    name = "direct"
    required_fields = ("problem", "solution")
    uses_teacher = False

    def read_options(self) -> None:
        self.templates: dict[str, jinja2.Template] = {}
        for part in ("question", "answer"):
            text = self.options.get(part)
            if text is None:
                continue
            try:
                self.templates[part] = _ENV.from_string(str(text))
            except jinja2.TemplateSyntaxError as exc:
                raise InvalidInput(f"method direct: options.{part} is not a valid template: {exc.message} (line {exc.lineno})") from None

    def render(self, part: str, values: dict[str, Any]) -> str:
        if part in self.templates:
            return " ".join(self.templates[part].render(**values).split())
        return " ".join(self.prompts.render(part, **values).split())

    def plan(self, record: dict[str, Any]) -> Plan:
        values = {**{str(k): "" if v is None else str(v).strip() for k, v in (record.get("fields") or {}).items()},
                  **self.record_facts(record)}
        question, answer = self.render("question", values), self.render("answer", values)
        yield from ()  # a plan is a generator; this one asks the teacher nothing
        return [self.candidate(record, "p0", question, answer)]
