"""Chat examples to token ids with a mask that keeps the loss on the answers, using the tokenizer's chat template.

A template with ``{% generation %}`` markers gives TRL's assistant-only mask (the tokenizer's
``return_assistant_tokens_mask``). A template without them, such as SmolLM2's, falls back to
prompt/completion masking: each assistant turn is the completion of the chat rendered before it
(with the generation prompt), so only its tokens count. Either way the prompt is never trained on.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from synthtune.errors import StageSkipped


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


def _ids(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool,
         tools: list[dict[str, Any]] | None = None) -> list[int]:
    # Tools offered in the prompt render as evaluation will offer them (for templates with a tools section).
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt, tools=tools or None)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def loss_mask_kind(tokenizer: Any) -> str:
    """``assistant`` when the chat template marks the assistant's tokens, else ``completion`` (the fallback)."""
    from trl.chat_template_utils import has_generation_markers

    template = getattr(tokenizer, "chat_template", None)
    return "assistant" if template and has_generation_markers(template) else "completion"


FALLBACK_WARNING = ("the chat template of {model} has no {{% generation %}} markers: the loss is masked prompt/completion-wise "
                    "instead (each assistant turn is the completion of the chat before it; system and user turns are never trained on)")


def tokenize_chat(tokenizer: Any, messages: list[dict[str, Any]],
                  tools: list[dict[str, Any]] | None = None, kind: str = "completion") -> tuple[list[int], list[int]]:
    """Token ids of the whole chat and a mask that is 1 on assistant tokens only."""
    msgs = _renderable(messages)
    if kind == "assistant":
        out = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, tools=tools or None)
        return list(out["input_ids"]), list(out["assistant_masks"])
    full = _ids(tokenizer, msgs, False, tools)
    mask = [0] * len(full)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start = len(_ids(tokenizer, msgs[:i], True, tools))
        end = len(_ids(tokenizer, msgs[: i + 1], False, tools))
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
    loss_mask: str = "completion"


def record_id(example: dict[str, Any], n: int) -> str:
    """The id a reject names: the generator's row id, else its source record ids, else the line number."""
    if example.get("id"):
        return str(example["id"])
    prov = example.get("provenance") or {}
    sources = prov.get("source_ids") or ([prov["key"]] if prov.get("key") else [])
    return ",".join(str(s) for s in sources) if sources else f"line {n}"


def _group(example: dict[str, Any], n: int) -> str:
    """Examples generated from the same source records stay on one side of the train/validation split."""
    sources = (example.get("provenance") or {}).get("source_ids")
    return json.dumps(sorted(map(str, sources))) if sources else f"#{n}"


def validation_size(n: int, share: float) -> int:
    """Held-out examples: ``share`` of them, but at least one as soon as there are two (one stays for training)."""
    if n < 2 or share <= 0:
        return 0
    return min(n - 1, max(1, round(n * share)))


def build_dataset(tokenizer: Any, examples: list[dict[str, Any]], max_len: int, overlong: str, seed: int, val_share: float = 0.1) -> Prepared:
    """Tokenised train/validation examples; the validation slice is held out of the synthetic data.

    The validation examples are whole groups of examples that share their source records, so a
    paraphrase of a training example never scores the evaluation loss. Nothing trainable at all
    (an empty dataset, or every example rejected) raises StageSkipped: the method produced no
    usable data, and the run goes on with the other methods.
    """
    if not examples:
        raise StageSkipped("the synthetic dataset is empty: nothing to train on (see the generate stage's rejects)")
    out = Prepared(loss_mask=loss_mask_kind(tokenizer))
    column = "assistant_masks" if out.loss_mask == "assistant" else "completion_mask"
    rows: list[tuple[str, dict[str, list[int]]]] = []
    for n, ex in enumerate(examples, 1):
        messages = ex.get("messages") or []
        rid = record_id(ex, n)
        sources = (ex.get("provenance") or {}).get("source_ids")
        reject = {"id": rid, **({"source_ids": sources} if sources else {})}
        if not any(m.get("role") == "assistant" for m in messages):
            out.rejected.append({**reject, "reason": "no assistant turn"})
            continue
        ids, mask = tokenize_chat(tokenizer, messages, ex.get("tools"), out.loss_mask)
        if len(ids) > max_len:
            if overlong == "reject":
                out.rejected.append({**reject, "reason": f"longer than max_seq_len {max_len}", "detail": f"{len(ids)} tokens"})
                continue
            ids, mask = ids[:max_len], mask[:max_len]
            out.truncated += 1
        if 1 not in mask:
            out.rejected.append({**reject, "reason": f"assistant turn lies beyond max_seq_len {max_len}"})
            continue
        rows.append((_group(ex, n), {"input_ids": ids, column: mask}))
    if not rows:
        counts = Counter(r["reason"] for r in out.rejected)
        raise StageSkipped(
            f"no trainable example among the {len(examples)} synthetic examples ("
            + ", ".join(f"{count} {reason}" for reason, count in counts.most_common()) + ")"
        )
    rng = random.Random(seed)
    groups: dict[str, list[dict[str, list[int]]]] = {}
    for key, row in rows:
        groups.setdefault(key, []).append(row)
    order = list(groups)
    rng.shuffle(order)
    n_val = validation_size(len(rows), val_share)
    if len(order) < 2:  # all from one source: split the examples themselves
        flat = [r for _, r in rows]
        rng.shuffle(flat)
        out.validation, out.train = flat[:n_val], flat[n_val:]
    else:
        held: list[str] = []
        for key in order:  # whole groups, as many as fit in n_val
            if sum(len(groups[k]) for k in held) + len(groups[key]) <= n_val:
                held.append(key)
        if not held and n_val:  # every group is larger than n_val: hold out the smallest one
            smallest = min(order, key=lambda k: len(groups[k]))
            if len(groups[smallest]) < len(rows):
                held.append(smallest)
        out.validation = [r for k in held for r in groups[k]]
        out.train = [r for k in order if k not in held for r in groups[k]]
        rng.shuffle(out.train)
    out.tokens = sum(len(r["input_ids"]) for r in out.train)
    return out
