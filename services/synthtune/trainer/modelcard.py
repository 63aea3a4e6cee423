"""The Hugging Face model card (``README.md``) every adapter artifact carries: metadata in YAML front matter, then prose.

The front matter follows the Hub's model card metadata (``base_model``, ``library_name``, ``tags``,
``pipeline_tag``); synthtune's own keys (generation method, lineage ids) sit under ``synthtune:``.
"""

from __future__ import annotations

from typing import Any

import yaml

from synthtune.spec.train import TrainSpec


def model_card(summary: dict[str, Any], spec: TrainSpec, generation_method: str, lineage: dict[str, Any], store_uri: str) -> str:
    """README.md text for an adapter (``format: peft_lora``) or a whole fine-tuned model (``format: full_model``)."""
    peft = summary["format"] == "peft_lora"
    meta = {
        "base_model": spec.base_model,
        "library_name": "peft" if peft else "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["synthtune", "trl", "sft", summary["method"], f"generation-method:{generation_method}"] + (["lora"] if peft else []),
        "synthtune": {"generation_method": generation_method, **lineage},
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    load = ("PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), folder)" if peft
            else "AutoModelForCausalLM.from_pretrained(folder)")
    losses = summary.get("train_loss") or []
    evals = summary.get("eval_loss") or []
    rows = [
        ("method", summary["method"]), ("steps", summary["steps"]), ("learning rate", spec.learning_rate),
        ("warm-up steps", spec.warmup_steps), ("schedule", spec.scheduler), ("batch size", spec.batch_size),
        ("max sequence length", spec.max_seq_len), ("packing", spec.packing), ("loss on", _loss_on(summary.get("loss_mask"))),
        ("examples (held out)", f"{summary.get('examples', '?')} ({summary.get('validation_examples', '?')})"),
        ("final train loss", f"{losses[-1]:.4f}" if losses else "-"), ("final eval loss", f"{evals[-1]:.4f}" if evals else "-"),
        ("tokens/s", summary.get("tokens_per_s")), ("seed", spec.seed),
    ]
    if peft:
        lora = spec.lora
        rows[1:1] = [("LoRA", f"r={lora.r}, alpha={lora.alpha:g}, dropout={lora.dropout:g} on {', '.join(lora.target_modules)}")]
    if summary["method"] == "qlora":
        q = spec.quantization
        rows[2:2] = [("quantisation", f"{q.bits}-bit {q.quant_type}, double quantisation {q.double_quant}, compute {q.compute_dtype}")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"---\n{front}---\n\n"
        f"# {spec.base_model} fine-tuned on `{generation_method}` synthetic data\n\n"
        f"Trained by synthtune with TRL's SFTTrainer on the synthetic dataset `{lineage.get('synthetic', '?')}`, generated from "
        f"the prepared records `{lineage.get('prepared', '?')}` by the `{generation_method}` method.\n\n"
        f"Load it with `{load}`.\n\n"
        "## Training\n\n| setting | value |\n|---|---|\n" + table + "\n\n"
        "Curves: the TensorBoard event files in `runs/` (`tensorboard --logdir runs`); every number in `training_log.json`.\n\n"
        "## Evaluation\n\n"
        f"The comparison with the base model is in the report of the run that trained this adapter, in the store `{store_uri}`: "
        "`runs/<run id>/report.html` and `report.json` (`synthtune report <run id>`).\n"
    )


def _loss_on(mask: str | None) -> str:
    if mask == "assistant":
        return "assistant turns (the chat template's generation markers)"
    return "assistant turns (prompt/completion masking: the template has no generation markers)"
