"""Pick a chat backend from a ``ModelEndpointSpec``; each backend module is imported only when used."""

from __future__ import annotations

from typing import Any

from synthtune.errors import EXIT_FAILURE, InvalidInput, RetryableError
from synthtune.llm.chat import ChatBackend, ChatRequest
from synthtune.spec.generate import ModelEndpointSpec


class TeacherUnavailable(RetryableError):
    """The endpoint cannot be reached after every retry; the controller may retry the stage later."""

    # The CLI contract names exit 1 for an unreachable teacher; the controller still sees a RetryableError.
    exit_code = EXIT_FAILURE


def sampling(spec: ModelEndpointSpec, request: ChatRequest) -> dict[str, Any]:
    """The request's sampling settings, falling back to the endpoint spec's."""
    return {
        "temperature": spec.temperature if request.temperature is None else request.temperature,
        "top_p": spec.top_p,
        "max_tokens": request.max_tokens or spec.max_tokens,
        "seed": spec.seed if request.seed is None else request.seed,
    }


def describe(spec: ModelEndpointSpec) -> str:
    """A short, key-free name of the endpoint for provenance and messages."""
    if spec.backend == "openai":
        return f"openai:{spec.model}@{spec.base_url or 'https://api.openai.com/v1'}"
    return f"{spec.backend}:{spec.model}"


def build_backend(spec: ModelEndpointSpec, base_dir: str | None = None) -> ChatBackend:
    """The backend named by ``spec.backend``."""
    if spec.backend == "openai":
        from synthtune.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(spec)
    if spec.backend == "transformers":
        from synthtune.llm.transformers_backend import TransformersBackend

        return TransformersBackend(spec, base_dir)
    if spec.backend == "vllm":
        from synthtune.llm.vllm_backend import VLLMBackend

        return VLLMBackend(spec, base_dir)
    raise InvalidInput(f"unknown LLM backend {spec.backend!r} (use transformers, openai or vllm)")
