"""vLLM's offline engine on a GPU: one batched call per request list; imported only when used."""

from __future__ import annotations

from typing import Any

from synthtune.errors import InvalidInput
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.spec.generate import ModelEndpointSpec


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise InvalidInput(
            "backend 'vllm' needs the vllm package and a CUDA GPU (use the evaluator image, or backend: transformers on CPU)"
        ) from None
    return vllm


class VLLMBackend:
    def __init__(self, spec: ModelEndpointSpec, base_dir: str | None = None, enable_lora: bool = False) -> None:
        vllm = import_vllm()
        self.spec = spec
        self.model = spec.model
        self._vllm = vllm
        self.llm = vllm.LLM(model=resolve_model(spec.model, base_dir), enable_lora=enable_lora, seed=spec.seed or 0)

    def sampling(self, req: ChatRequest) -> Any:
        temp = self.spec.temperature if req.temperature is None else req.temperature
        return self._vllm.SamplingParams(
            temperature=temp, top_p=self.spec.top_p, max_tokens=req.max_tokens or self.spec.max_tokens,
            seed=req.seed if req.seed is not None else self.spec.seed,
        )

    def complete(self, requests: list[ChatRequest], progress: Progress | None = None, lora: Any = None) -> list[ChatResult]:
        if not requests:
            return []
        outputs = self.llm.chat([r.messages for r in requests], [self.sampling(r) for r in requests], lora_request=lora, use_tqdm=False)
        results = []
        for req, out in zip(requests, outputs, strict=True):
            comp = out.outputs[0]
            results.append(ChatResult(
                text=comp.text.strip(), finish_reason=comp.finish_reason or "stop",
                prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=len(comp.token_ids), key=req.key,
            ))
        if progress is not None:
            progress.advance(len(requests))
        return results

    def close(self) -> None:
        pass
