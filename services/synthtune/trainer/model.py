"""Base model loading for qlora / lora / full, and the LoRA adapter on the thesis's target modules."""

from __future__ import annotations

from typing import Any

from synthtune.errors import InvalidInput
from synthtune.spec.train import TrainSpec


def pick_method(spec: TrainSpec) -> str:
    import torch

    return spec.method or ("qlora" if torch.cuda.is_available() else "lora")


def pick_precision(spec: TrainSpec) -> str:
    import torch

    if spec.precision != "auto":
        return spec.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def load_model(path: str, spec: TrainSpec, method: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code, "use_safetensors": True}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        q = spec.quantization
        compute = getattr(torch, q.compute_dtype)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=q.bits == 4, load_in_8bit=q.bits == 8, bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant, bnb_4bit_compute_dtype=compute,
        )
        kwargs["dtype"] = compute
    else:
        precision = pick_precision(spec)
        kwargs["dtype"] = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise InvalidInput(f"base model {path!r} cannot be loaded: {exc}") from None
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    return model


def module_names(model: Any) -> list[str]:
    """Leaf module names a LoRA target can name (q_proj, lm_head, ...)."""
    names = set()
    for full, module in model.named_modules():
        if not list(module.children()) and full:
            names.add(full.rsplit(".", 1)[-1])
    return sorted(names)


def add_lora(model: Any, spec: TrainSpec) -> Any:
    from peft import LoraConfig, get_peft_model

    available = module_names(model)
    missing = [m for m in spec.lora.target_modules if m not in available]
    if missing:
        raise InvalidInput(
            f"train.lora.target_modules: the model has no module(s) {', '.join(missing)}; it has: {', '.join(available)}"
        )
    config = LoraConfig(
        r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
        target_modules=list(spec.lora.target_modules), bias="none", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
