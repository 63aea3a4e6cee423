"""Chat backends: transformers (in-process, batched), openai (any compatible endpoint), vllm (GPU)."""

from __future__ import annotations

from synthtune.errors import InvalidInput
from synthtune.llm.chat import ChatBackend
from synthtune.spec.generate import ModelEndpointSpec


def build_backend(spec: ModelEndpointSpec, base_dir: str | None = None) -> ChatBackend:
    if spec.backend == "openai":
        from synthtune.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(spec)
    if spec.backend == "transformers":
        from synthtune.llm.hf_backend import TransformersBackend

        return TransformersBackend(spec, base_dir)
    if spec.backend == "vllm":
        from synthtune.llm.vllm_backend import VLLMBackend

        return VLLMBackend(spec, base_dir)
    raise InvalidInput(f"unknown backend {spec.backend!r} (use transformers, openai or vllm)")
