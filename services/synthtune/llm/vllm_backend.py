"""vLLM's offline engine in-process on a GPU; ``vllm`` is imported only when this backend is built."""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any

from synthtune.errors import PermanentError
from synthtune.llm.backends import describe, sampling
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.llm.models import resolve_model
from synthtune.llm.structured import parse_tool_calls
from synthtune.progress import Progress
from synthtune.spec.generate import ModelEndpointSpec


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise PermanentError(
            "teacher backend 'vllm' needs the vllm package on a machine with a GPU (pip install vllm); "
            f"use backend 'transformers' on CPU or 'openai' against a vLLM server ({exc})"
        ) from None
    return vllm


def structured_kwargs(vllm: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """JSON-schema constrained decoding in whichever spelling this vLLM version has."""
    params_mod = vllm.sampling_params
    if hasattr(params_mod, "StructuredOutputsParams"):  # vLLM >= 0.10.2
        return {"structured_outputs": params_mod.StructuredOutputsParams(json=schema)}
    if hasattr(params_mod, "GuidedDecodingParams"):  # vLLM 0.6 - 0.10
        return {"guided_decoding": params_mod.GuidedDecodingParams(json=schema)}
    return {}


def sampling_params(vllm: Any, spec: ModelEndpointSpec, request: ChatRequest) -> Any:
    """A ``vllm.SamplingParams`` for one request (temperature, top_p, max_tokens, seed, JSON schema)."""
    s = sampling(spec, request)
    kwargs: dict[str, Any] = {"temperature": s["temperature"], "top_p": s["top_p"], "max_tokens": s["max_tokens"]}
    if s["seed"] is not None:
        kwargs["seed"] = s["seed"]
    if request.json_schema is not None:
        kwargs.update(structured_kwargs(vllm, request.json_schema))
    return vllm.SamplingParams(**kwargs)


def to_result(request: ChatRequest, output: Any) -> ChatResult:
    """A ChatResult from one ``vllm.RequestOutput``."""
    if not output.outputs:
        return ChatResult(finish_reason="error", error="vLLM returned no completion", key=request.key)
    best = output.outputs[0]
    text = (best.text or "").strip()
    calls = parse_tool_calls(text) if request.tools else []
    finish = "tool_calls" if calls else ("length" if best.finish_reason == "length" else "stop")
    return ChatResult(
        text=text, tool_calls=calls, finish_reason=finish,
        prompt_tokens=len(output.prompt_token_ids or []), completion_tokens=len(best.token_ids or []), key=request.key,
    )


class VLLMBackend:
    """One ``vllm.LLM`` engine; it batches every request of a ``complete`` call itself."""

    def __init__(self, spec: ModelEndpointSpec, base_dir: str | None = None) -> None:
        self._vllm = import_vllm()
        self.spec, self.model = spec, spec.model
        self.name = describe(spec)
        self.llm = self._vllm.LLM(model=resolve_model(spec.model, base_dir), seed=spec.seed or 0)

    def complete(self, requests: list[ChatRequest], progress: Progress | None = None) -> list[ChatResult]:
        results: list[ChatResult | None] = [None] * len(requests)

        # LLM.chat takes one tools list per call, so requests are grouped by their tools.
        def tools_key(i: int) -> str:
            return json.dumps(requests[i].tools or [], sort_keys=True)

        for _, group in groupby(sorted(range(len(requests)), key=tools_key), key=tools_key):
            indices = list(group)
            batch = [requests[i] for i in indices]
            try:
                outputs = self.llm.chat(
                    [r.messages for r in batch],
                    sampling_params=[sampling_params(self._vllm, self.spec, r) for r in batch],
                    use_tqdm=False,
                    tools=batch[0].tools or None,
                )
                done = [to_result(r, o) for r, o in zip(batch, outputs, strict=True)]
            except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than the context
                done = [ChatResult(finish_reason="error", error=f"vLLM: {exc}", key=r.key) for r in batch]
            for i, result in zip(indices, done, strict=True):
                results[i] = result
            if progress is not None:
                progress.advance(len(batch))
        return [r for r in results if r is not None]

    def close(self) -> None:
        self.llm = None
