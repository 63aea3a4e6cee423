"""Chat examples to token ids with an assistant-only loss mask, using the tokenizer's chat template."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from synthtune.errors import InvalidInput


def _renderable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages any chat template can render: tool calls become JSON text in the assistant turn."""
    out = []
    for m in messages:
        content = m.get("content") or ""
        if m.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")} for c in m["tool_calls"]]
            content = (content + "\n" if content else "") + json.dumps({"tool_calls": calls}, ensure_ascii=False)
        out.append({"role": m["role"], "content": content})
    return out


def _ids(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def tokenize_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat and a mask that is 1 on assistant tokens only."""
    msgs = _renderable(messages)
    full = _ids(tokenizer, msgs, False)
    mask = [0] * len(full)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start = len(_ids(tokenizer, msgs[:i], True))
        end = len(_ids(tokenizer, msgs[: i + 1], False))
        for t in range(min(start, len(full)), min(end, len(full))):
            mask[t] = 1
    return full, mask


@dataclass
class Prepared:
    train: list[dict[str, list[int]]] = field(default_factory=list)
    validation: list[dict[str, list[int]]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    truncated: int = 0
    tokens: int = 0


def build_dataset(tokenizer: Any, examples: list[dict[str, Any]], max_len: int, overlong: str, seed: int, val_share: float = 0.1) -> Prepared:
    """Tokenised train/validation examples; the validation slice is held out of the synthetic data."""
    if not examples:
        raise InvalidInput("the synthetic dataset is empty: nothing to train on (see the generate stage's rejects)")
    out = Prepared()
    rows = []
    for n, ex in enumerate(examples, 1):
        messages = ex.get("messages") or []
        key = (ex.get("provenance") or {}).get("key", f"example {n}")
        if not any(m.get("role") == "assistant" for m in messages):
            out.rejected.append({"id": key, "reason": "no assistant turn"})
            continue
        ids, mask = tokenize_chat(tokenizer, messages)
        if len(ids) > max_len:
            if overlong == "reject":
                out.rejected.append({"id": key, "reason": f"{len(ids)} tokens > max_seq_len {max_len}"})
                continue
            ids, mask = ids[:max_len], mask[:max_len]
            out.truncated += 1
        if 1 not in mask:
            out.rejected.append({"id": key, "reason": "assistant turn lies beyond max_seq_len"})
            continue
        rows.append({"input_ids": ids, "assistant_masks": mask})
    if not rows:
        reasons = sorted({r["reason"] for r in out.rejected})
        raise InvalidInput(f"no trainable example among {len(examples)}: {'; '.join(reasons)}")
    random.Random(seed).shuffle(rows)
    n_val = int(len(rows) * val_share) if len(rows) >= 10 else 0
    out.validation, out.train = rows[:n_val], rows[n_val:]
    out.tokens = sum(len(r["input_ids"]) for r in out.train)
    return out
