"""Generation methods, registered by name; each turns one input record into teacher rounds."""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from ruamel.yaml import YAML

from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.records import field_text

REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    REGISTRY[cls.name] = cls
    return cls


@lru_cache(maxsize=16)
def load_prompts(name: str) -> dict[str, Any]:
    text = resources.files("synthtune.generator").joinpath(f"prompts/{name}.yaml").read_text(encoding="utf-8")
    return dict(YAML(typ="safe").load(text))


@dataclass
class Item:
    """One example to generate: a record, a variant (persona, operation, ...) and the teacher's outputs so far."""

    key: str
    record: dict[str, Any]
    variant: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:question|q|answer|a|rewritten question|technician'?s question)\s*[:：-]\s*(?:\*\*)?\s*", re.I)


def clean_reply(text: str) -> str:
    """Drop labels and wrapping quotes that small models add around a requested sentence."""
    text = _PREFIX.sub("", text.strip())
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text.strip()


_QUOTED_QUESTION = re.compile(r"[\"“]([^\"”]{8,}?\?)[\"”]")


def extract_question(text: str) -> str:
    """The question itself: a quoted question if the model wrapped one in prose, else the first paragraph."""
    quoted = _QUOTED_QUESTION.search(text)
    if quoted:
        return quoted.group(1).strip()
    return clean_reply(text.split("\n\n", 1)[0])


def facts(record: dict[str, Any]) -> dict[str, str]:
    out = {k: field_text(record, k) or "not recorded" for k in ("problem", "machine", "cause", "solution", "hours")}
    out["text"] = record.get("text", "")
    src = record.get("source") or {}
    out["source"] = f"{src.get('file', '')}" + (f", page {src['page']}" if src.get("page") else "")
    return out


class Method:
    name = ""
    record_types: tuple[str, ...] = ("record",)
    required_fields: tuple[str, ...] = ()
    rounds: tuple[str, ...] = ()

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.prompts = load_prompts(self.name)
        self.version = str(self.prompts["version"])

    def variants(self, record: dict[str, Any], n: int, rng: random.Random) -> list[dict[str, Any]]:
        return [{"pair": i} for i in range(n)]

    def request(self, round_name: str, item: Item) -> ChatRequest:
        spec = self.prompts[round_name]
        values = {**facts(item.record), **item.variant, **item.outputs}
        return ChatRequest(messages=[
            {"role": "system", "content": spec["system"].format(**values)},
            {"role": "user", "content": spec["user"].format(**values)},
        ], key=item.key)

    def accept(self, round_name: str, item: Item, result: ChatResult) -> None:
        """Store the round's output on the item, or set item.error."""
        text = clean_reply(result.text)
        if round_name in ("question", "evolve"):
            text = extract_question(text)
        if not text:
            item.error = f"{round_name}: empty reply" + (" (truncated)" if result.finish_reason == "length" else "")
            return
        item.outputs["question" if round_name in ("question", "evolve") else round_name] = text

    def messages(self, item: Item, system_prompt: str) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": item.outputs["question"]},
            {"role": "assistant", "content": item.outputs["answer"]},
        ]


@register
class RecordQA(Method):
    name = "record_qa"
    required_fields = ("problem", "solution")
    rounds = ("question", "answer")


@register
class Persona(Method):
    name = "persona"
    required_fields = ("problem", "solution")
    rounds = ("question", "answer")

    def variants(self, record: dict[str, Any], n: int, rng: random.Random) -> list[dict[str, Any]]:
        personas = self.prompts["personas"]
        chosen = self.options.get("personas") or list(personas)
        languages = self.options.get("languages") or [None]
        combos = list(itertools.product(chosen, languages))
        rng.shuffle(combos)
        out = []
        for i, (label, lang) in enumerate(combos[: max(n, 1) * int(self.options.get("per_record", 1))]):
            out.append({
                "pair": i, "persona_label": label, "persona_description": personas.get(label, label),
                "language": lang or "", "language_clause": f", in {lang}" if lang else "",
            })
        return out


@register
class Evol(Method):
    name = "evol"
    required_fields = ("problem", "solution")
    rounds = ("evolve", "answer")

    def variants(self, record: dict[str, Any], n: int, rng: random.Random) -> list[dict[str, Any]]:
        ops = self.options.get("operations") or list(self.prompts["operations"])
        from synthtune.records import question_for_record

        return [{"pair": i, "op": op, "operation": self.prompts["operations"][op], "seed": question_for_record(record)}
                for i, op in enumerate(rng.sample(ops, k=min(len(ops), max(1, n))))]


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower()) if len(w) > 3 or any(c.isdigit() for c in w)}


@register
class DocumentQA(Method):
    name = "document_qa"
    record_types = ("chunk",)
    rounds = ("generate",)

    def variants(self, record: dict[str, Any], n: int, rng: random.Random) -> list[dict[str, Any]]:
        return [{"pair": i, "focus_clause": "" if i == 0 else f" (a different aspect than question {i})"} for i in range(n)]

    def accept(self, round_name: str, item: Item, result: ChatResult) -> None:
        from synthtune.llm.openai_backend import parse_json_loose

        try:
            data = parse_json_loose(result.text)
            question, answer = str(data["question"]).strip(), str(data["answer"]).strip()
        except (ValueError, KeyError, TypeError):
            item.error = "reply is not JSON with question and answer"
            return
        words = _content_words(answer)
        support = len(words & _content_words(item.record.get("text", ""))) / max(1, len(words))
        if not question or not answer:
            item.error = "empty question or answer"
        elif support < float(self.options.get("min_support", 0.6)):
            item.error = f"answer not supported by its chunk (support {support:.2f})"
        else:
            item.outputs.update(question=question, answer=answer, support=round(support, 3))


@register
class EventScenario(Method):
    name = "event_scenario"
    record_types = ("episode",)
    rounds = ("generate",)

    def variants(self, record: dict[str, Any], n: int, rng: random.Random) -> list[dict[str, Any]]:
        dims = self.prompts["dimensions"]
        tree = list(itertools.product(dims["fault"], dims["state"], dims["timing"]))
        rng.shuffle(tree)
        return [{"pair": i, "fault": f, "state": s, "timing": t} for i, (f, s, t) in enumerate(tree[: max(1, n)])]

    def request(self, round_name: str, item: Item) -> ChatRequest:
        req = super().request(round_name, item)
        req.json_schema = {"type": "object", "properties": {k: {"type": "string"} for k in ("situation", "command", "target", "rationale")},
                           "required": ["situation", "command", "target", "rationale"]}
        return req

    def accept(self, round_name: str, item: Item, result: ChatResult) -> None:
        from synthtune.llm.openai_backend import parse_json_loose

        try:
            data = parse_json_loose(result.text)
            values = {k: str(data[k]).strip() for k in ("situation", "command", "target", "rationale")}
        except (ValueError, KeyError, TypeError):
            item.error = "reply is not JSON with situation, command, target and rationale"
            return
        if not all(values.values()):
            item.error = "scenario has an empty field"
            return
        logged = {e.get("command") for e in item.record.get("events") or [] if e.get("command")}
        values["logged_command"] = sorted(logged)[0] if logged else ""
        item.outputs.update(values)

    def messages(self, item: Item, system_prompt: str) -> list[dict[str, Any]]:
        o = item.outputs
        args = json.dumps({"command": o["command"], "target": o["target"], "rationale": o["rationale"]})
        return [
            {"role": "system", "content": "You assist a production line controller. Decide the next command and call issue_command."},
            {"role": "user", "content": o["situation"]},
            {"role": "assistant", "content": o["rationale"], "tool_calls": [
                {"id": f"call_{item.key[:8]}", "type": "function", "function": {"name": "issue_command", "arguments": args}}]},
        ]

    def tools(self) -> list[dict[str, Any]]:
        return [self.prompts["tool"]]
