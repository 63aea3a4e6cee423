"""In-process generation with transformers: batched, left-padded, chat template from the tokenizer."""

from __future__ import annotations

import threading
from typing import Any

from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.spec.generate import ModelEndpointSpec

_CACHE: dict[tuple[str, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def load_causal_lm(path: str, device: str | None = None) -> tuple[Any, Any]:
    """Tokenizer and model for ``path``, loaded once per process (evaluation reuses the teacher's)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with _LOCK:
        key = (path, device)
        if key not in _CACHE:
            tokenizer = AutoTokenizer.from_pretrained(path)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
            _CACHE[key] = (tokenizer, model)
        return _CACHE[key]


def generate_batch(tokenizer: Any, model: Any, prompts: list[list[dict[str, Any]]], temperature: float, max_new_tokens: int,
                   top_p: float = 1.0, seed: int | None = None) -> list[tuple[str, int, int, str]]:
    """(text, prompt_tokens, completion_tokens, finish_reason) for each chat prompt."""
    import torch

    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    if seed is not None:
        torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kwargs.update(do_sample=False)
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1]:]
    results = []
    eos = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for i in range(len(prompts)):
        ids = [t for t in new[i].tolist()]
        n = len(ids)
        while n and ids[n - 1] in eos:
            n -= 1
        finished = n < len(ids)
        results.append((tokenizer.decode(ids[:n], skip_special_tokens=True).strip(), int(enc["attention_mask"][i].sum()), n,
                        "stop" if finished else "length"))
    return results


class TransformersBackend:
    """The CPU default: the embedded SmolLM2 unless the spec names another model."""

    def __init__(self, spec: ModelEndpointSpec, base_dir: str | None = None) -> None:
        self.spec = spec
        self.model = spec.model
        self._path = resolve_model(spec.model, base_dir)

    def complete(self, requests: list[ChatRequest], progress: Progress | None = None) -> list[ChatResult]:
        tokenizer, model = load_causal_lm(self._path)
        results: list[ChatResult] = []
        size = max(1, self.spec.concurrency)
        # Batches of similar prompt length waste less padding.
        order = sorted(range(len(requests)), key=lambda i: (requests[i].temperature or 0.0, sum(len(m.get("content") or "") for m in requests[i].messages)))
        by_index: dict[int, ChatResult] = {}
        for start in range(0, len(order), size):
            if progress is not None:
                progress.check_cancelled()
            idx = order[start:start + size]
            batch = [requests[i] for i in idx]
            temp = batch[0].temperature if batch[0].temperature is not None else self.spec.temperature
            max_tokens = max(r.max_tokens or self.spec.max_tokens for r in batch)
            try:
                outs = generate_batch(tokenizer, model, [r.messages for r in batch], temp, max_tokens, self.spec.top_p,
                                      batch[0].seed if batch[0].seed is not None else self.spec.seed)
                for i, (text, p_tok, c_tok, finish) in zip(idx, outs, strict=True):
                    by_index[i] = ChatResult(text=text, finish_reason=finish, prompt_tokens=p_tok, completion_tokens=c_tok, key=requests[i].key)
            except Exception as exc:  # one failed batch must not lose the rest
                for i in idx:
                    by_index[i] = ChatResult(finish_reason="error", error=f"generation failed: {exc}", key=requests[i].key)
            if progress is not None:
                progress.advance(len(idx))
        results = [by_index[i] for i in range(len(requests))]
        return results

    def close(self) -> None:
        pass
