"""The chat-completion interface every LLM use goes through: teacher, judge, translation.

Backends (``transformers`` in-process, ``openai`` for any compatible endpoint, ``vllm`` offline
on a GPU) implement ``ChatBackend``; ``make_backend`` picks one from a ``ModelEndpointSpec``.
A backend never raises for one bad completion: it returns a ``ChatResult`` with ``error`` set,
so one failed request never kills a batch. It raises ``RetryableError`` / ``PermanentError``
only when the backend as a whole is unusable (unreachable after retries, wrong key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from synthtune.progress import Progress
from synthtune.spec.generate import ModelEndpointSpec


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    temperature: float | None = None  # None: the endpoint spec's value
    max_tokens: int | None = None
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # structured output where the backend supports it
    tools: list[dict[str, Any]] | None = None  # OpenAI tools format
    key: str | None = None  # caller's cache key, echoed back


@dataclass
class ChatResult:
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = ""  # "stop", "length", "tool_calls", "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ChatBackend(Protocol):
    model: str

    def complete(self, requests: list[ChatRequest], progress: Progress | None = None) -> list[ChatResult]:
        """Results in request order; failures are results with ``error`` set."""
        ...

    def close(self) -> None: ...


def make_backend(spec: ModelEndpointSpec, base_dir: str | None = None) -> ChatBackend:
    """The backend named by ``spec.backend``; heavy imports happen only here."""
    from synthtune.llm.backends import build_backend  # implemented by the generation work

    return build_backend(spec, base_dir)
