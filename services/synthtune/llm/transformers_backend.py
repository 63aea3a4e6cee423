"""In-process generation with transformers: batched, left-padded, chat template from the tokenizer."""

from __future__ import annotations

import logging
from itertools import groupby
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.llm.backends import describe, sampling
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.llm.models import resolve_model
from synthtune.llm.structured import parse_tool_calls
from synthtune.progress import Progress
from synthtune.spec.generate import ModelEndpointSpec

log = logging.getLogger(__name__)


class TransformersBackend:
    """A causal LM loaded once; ``spec.concurrency`` is the batch size."""

    def __init__(self, spec: ModelEndpointSpec, base_dir: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec, self.model = spec, spec.model
        self.name = describe(spec)
        path = resolve_model(spec.model, base_dir)
        self._torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # Left padding keeps every prompt's last token next to the generated ones in a batch.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        # safetensors only: a pickled .bin can run code while it loads.
        try:
            self.lm: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True)
        except OSError as exc:
            raise InvalidInput(f"teacher {self.name}: no safetensors weights for {path} (pickled .bin weights are refused): {exc}") from None
        self.lm = self.lm.to(self.device).eval()

    def _prompt(self, request: ChatRequest) -> str:
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
        if request.tools:
            kwargs["tools"] = request.tools
        return str(self.tokenizer.apply_chat_template(request.messages, **kwargs))

    def complete(self, requests: list[ChatRequest], progress: Progress | None = None) -> list[ChatResult]:
        results: list[ChatResult | None] = [None] * len(requests)
        # Requests sharing sampling settings share a generate() call; order is restored at the end.
        order = sorted(range(len(requests)), key=lambda i: self._group_key(requests[i]))
        for _, group in groupby(order, key=lambda i: self._group_key(requests[i])):
            indices = list(group)
            for start in range(0, len(indices), self.spec.concurrency):
                batch = indices[start : start + self.spec.concurrency]
                for i, result in zip(batch, self._generate([requests[i] for i in batch]), strict=True):
                    results[i] = result
                if progress is not None:
                    progress.advance(len(batch))
        return [r for r in results if r is not None]

    def _group_key(self, request: ChatRequest) -> tuple[Any, ...]:
        s = sampling(self.spec, request)
        return (s["temperature"], s["top_p"], s["max_tokens"], s["seed"] if s["seed"] is not None else -1)

    def _generate(self, batch: list[ChatRequest]) -> list[ChatResult]:
        torch = self._torch
        s = sampling(self.spec, batch[0])
        try:
            prompts = [self._prompt(r) for r in batch]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            if s["seed"] is not None:
                torch.manual_seed(int(s["seed"]))
            do_sample = s["temperature"] > 0
            kwargs: dict[str, Any] = {"max_new_tokens": s["max_tokens"], "do_sample": do_sample,
                                      "pad_token_id": self.tokenizer.pad_token_id}
            if do_sample:
                kwargs.update(temperature=s["temperature"], top_p=s["top_p"])
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                out = self.lm.generate(**enc, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one failed batch must not kill the run: its requests carry the error
            log.warning("transformers batch of %d failed: %s", len(batch), exc)
            return [ChatResult(finish_reason="error", error=f"generation failed: {exc}", key=r.key) for r in batch]
        prompt_len = enc["input_ids"].shape[1]
        eos_ids = self._eos_ids()
        results = []
        for row, request in enumerate(batch):
            new = out[row, prompt_len:].tolist()
            ended = any(t in eos_ids for t in new)
            while new and new[-1] in eos_ids | {self.tokenizer.pad_token_id}:
                new.pop()
            if ended and eos_ids:
                new = new[: next((k for k, t in enumerate(new) if t in eos_ids), len(new))]
            text = str(self.tokenizer.decode(new, skip_special_tokens=True)).strip()
            calls = parse_tool_calls(text) if request.tools else []
            results.append(ChatResult(
                text=text,
                tool_calls=calls,
                finish_reason="tool_calls" if calls else ("stop" if ended else "length"),
                prompt_tokens=int(enc["attention_mask"][row].sum()),
                completion_tokens=len(new) + (1 if ended else 0),
                key=request.key,
            ))
        return results

    def _eos_ids(self) -> set[int]:
        ids = self.lm.generation_config.eos_token_id
        found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            found.add(self.tokenizer.eos_token_id)
        return found

    def close(self) -> None:
        self.lm = None
