"""What every generation method shares: candidates, the per-record plan protocol, reply checks.

A method turns one prepared record into a *plan*: a generator that yields lists of
``ChatRequest`` and receives their ``ChatResult`` lists, and finally returns its candidates.
The driver batches the requests of many plans into one ``backend.complete`` call, so methods
read as plain step-by-step code while the backend still sees full batches.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from synthtune.generator.templates import PromptSet
from synthtune.generator.text import clean_reply, copies_prompt
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.records import field_text
from synthtune.spec.generate import GenerateSpec, MethodSpec


class RecordFailed(Exception):
    """A teacher request for this record failed after retries: the record is retried on resume."""


@dataclass
class Candidate:
    """One generated example before the corpus filters; ``reject`` is set when the method refused it."""

    id: str
    source_ids: list[str]
    messages: list[dict[str, Any]]
    variant: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    reject: str | None = None
    score: float | None = None
    detail: str = ""
    language: str | None = None  # expected ISO code when the method asked for a language
    sampling: dict[str, dict[str, Any]] = field(default_factory=dict)  # request variant -> seed and temperature sent

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)

    @property
    def question(self) -> str:
        users = [m for m in self.messages if m["role"] == "user"]
        return str(users[0].get("content") or "") if users else ""

    @property
    def answer(self) -> str:
        """The last assistant turn's text, with its tool calls written out."""
        turns = [m for m in self.messages if m["role"] == "assistant"]
        if not turns:
            return ""
        last = turns[-1]
        calls = " ".join(f"{c['function']['name']}({c['function']['arguments']})" for c in last.get("tool_calls") or [])
        return " ".join(p for p in (str(last.get("content") or ""), calls) if p)


def trim_to_sentence(text: str) -> str:
    """Text cut back to its last complete line or sentence (for replies cut off at max_tokens)."""
    text = text.strip()
    if text.endswith((".", "!", "?")):
        return text
    if "\n" in text:  # step lists: drop the unfinished last line
        return text.rsplit("\n", 1)[0].strip()
    ends = [m.end() for m in re.finditer(r"(?<!\d)[.!?](?=\s)", text)]  # "3. " is a list number, not an end
    return text[: ends[-1]].strip() if ends else ""


Plan = Generator[list[ChatRequest], list[ChatResult], list[Candidate]]


@dataclass
class GenContext:
    generate: GenerateSpec
    method: MethodSpec
    prompts: PromptSet

    def seed_for(self, record_id: str, variant: str) -> int:
        """A stable per-request seed, distinct per record and variant, from the generate seed."""
        digest = hashlib.sha256(f"{self.generate.seed}|{record_id}|{variant}".encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Method:
    """Base of the registered methods; subclasses set the class attributes and write ``plan``."""

    name: ClassVar[str]
    record_type: ClassVar[str] = "record"  # the prepared records this method reads
    required_fields: ClassVar[tuple[str, ...]] = ()  # record fields that must be non-empty
    needs_text: ClassVar[bool] = False  # chunks and episodes carry their content in "text"
    uses_teacher: ClassVar[bool] = True  # False: the plan asks nothing, so no teacher is loaded

    def __init__(self, ctx: GenContext) -> None:
        self.ctx = ctx
        self.prompts = ctx.prompts
        self.options = dict(ctx.method.options)
        self.pairs = ctx.method.pairs_per_record
        self._sampling: dict[str, dict[str, dict[str, Any]]] = {}  # record id -> request variant -> seed, temperature
        self.read_options()

    def read_options(self) -> None:
        """Read and check this method's ``options``, raising InvalidInput that names the bad one (none here)."""

    def missing(self, record: dict[str, Any]) -> list[str]:
        """Names of the required inputs this record lacks."""
        gaps = [f for f in self.required_fields if not field_text(record, f)]
        if self.needs_text and not str(record.get("text") or "").strip():
            gaps.append("text")
        return gaps

    def plan(self, record: dict[str, Any]) -> Plan:
        raise NotImplementedError

    def release(self, record_id: str) -> None:
        """Forget what was noted while planning ``record_id`` (called when its plan ends)."""
        self._sampling.pop(record_id, None)

    # helpers for subclasses ---------------------------------------------------------------
    def ask(self, record: dict[str, Any], variant: str, prompt: str | list[dict[str, Any]], *,
            tools: list[dict[str, Any]] | None = None, temperature: float | None = None) -> ChatRequest:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        request = ChatRequest(messages=messages, seed=self.ctx.seed_for(record["id"], variant), tools=tools,
                              temperature=temperature, key=f"{record['id']}#{variant}")
        self.note_sent(record, variant, request)
        return request

    def note_sent(self, record: dict[str, Any], variant: str, request: ChatRequest) -> None:
        """Record the seed and temperature ``request`` goes out with (the example's provenance)."""
        sent = self.ctx.generate.teacher.temperature if request.temperature is None else request.temperature
        self._sampling.setdefault(record["id"], {})[variant] = {"seed": request.seed, "temperature": sent}

    def reply(self, result: ChatResult, request: ChatRequest) -> tuple[str, str | None]:
        """(cleaned text, reject reason or None); a failed request fails the whole record."""
        if not result.ok:
            raise RecordFailed(result.error or "request failed")
        text = clean_reply(result.text)
        if not text:
            return "", "empty"
        if result.finish_reason == "length":
            trimmed = trim_to_sentence(text) if self.ctx.generate.filters.keep_truncated else ""
            if len(trimmed) < 20:
                return text, "truncated"
            text = trimmed
        prompt = "\n".join(str(m.get("content") or "") for m in request.messages if m["role"] == "user")
        if copies_prompt(text, prompt):
            return text, "copies_prompt"
        return text, None

    def candidate(self, record: dict[str, Any], variant: str, question: str, answer: str, *,
                  reject: str | None = None, info: dict[str, Any] | None = None, language: str | None = None) -> Candidate:
        messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
        if answer:
            messages.append({"role": "assistant", "content": answer})
        # The seed and temperature each request of this example was sent with ("v0.q", "v0.a", ...).
        sampling = {k: v for k, v in self._sampling.get(record["id"], {}).items() if k.split(".")[0] == variant}
        return Candidate(id=f"{record['id']}#{variant}", source_ids=[record["id"]], messages=messages,
                         variant={"name": variant, **(info or {})}, reject=reject, language=language, sampling=sampling)

    def record_facts(self, record: dict[str, Any]) -> dict[str, str]:
        return {name: field_text(record, name) for name in ("machine", "problem", "cause", "solution", "hours")}
