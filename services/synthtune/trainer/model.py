"""Base model loading for qlora / lora / full, and the LoRA adapter on the thesis's target modules."""

from __future__ import annotations

import math
from pathlib import Path
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


def check_model_folder(path: str, spec: TrainSpec) -> None:
    """Refuse, before any training starts, a local model folder we would not load.

    Weights must be safetensors (a pickled ``.bin`` can run code when loaded), and a folder that
    ships its own model code (``auto_map`` in config.json) needs ``train.trust_remote_code: true``.
    """
    import json

    folder = Path(path)
    if not folder.is_dir():
        return  # an HF id from the local cache: from_pretrained(use_safetensors=True) checks it
    if not any(folder.glob("*.safetensors")):
        found = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack"))
        raise InvalidInput(
            f"train.base_model {path}: no .safetensors weights in the folder"
            + (f" (found {', '.join(found)})" if found else "")
            + "; synthtune loads safetensors only: convert them (load and save_pretrained(..., safe_serialization=True)) or give a .gguf file"
        )
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return
    if config.get("auto_map") and not spec.trust_remote_code:
        raise InvalidInput(
            f"train.base_model {path}: the model ships its own code (auto_map in config.json); "
            "synthtune does not run it unless train.trust_remote_code is true"
        )


def count_parameters(model: Any) -> int:
    """Parameters of the model as trained: a 4-bit weight counts its unpacked size, not its packed bytes."""
    total = 0
    for p in model.parameters():
        shape = getattr(getattr(p, "quant_state", None), "shape", None)
        total += int(math.prod(shape)) if shape is not None else p.numel()
    return total


def load_model(path: str, spec: TrainSpec, method: str, checkpointing: bool = False) -> Any:
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
        if torch.cuda.is_available():  # 4-bit weights cannot move later: load them on this worker's own GPU
            import os

            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    else:
        precision = pick_precision(spec)
        kwargs["dtype"] = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    check_model_folder(path, spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise InvalidInput(f"base model {path!r} cannot be loaded: {exc}") from None
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise InvalidInput(f"base model {path!r} needs its own code; set train.trust_remote_code: true to allow it ({exc})") from None
        raise
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    return model


def gradient_checkpointing(spec: TrainSpec) -> bool:
    """On GPU as the spec says; on CPU, where memory is rarely the limit and recomputing costs about
    a third more time, only when the spec sets it explicitly (call it on the spec as loaded, whose
    ``model_fields_set`` still says what the user wrote)."""
    import torch

    if torch.cuda.is_available():
        return spec.gradient_checkpointing
    return spec.gradient_checkpointing and "gradient_checkpointing" in spec.model_fields_set


def module_names(model: Any) -> list[str]:
    """Leaf module names a LoRA target can name (q_proj, lm_head, ...)."""
    names = set()
    for full, module in model.named_modules():
        if not list(module.children()) and full:
            names.add(full.rsplit(".", 1)[-1])
    return sorted(names)


def lora_config(model: Any, spec: TrainSpec) -> Any:
    """The PEFT LoRA config SFTTrainer wraps the model with, after checking the model has every target module."""
    from peft import LoraConfig

    available = module_names(model)
    missing = [m for m in spec.lora.target_modules if m not in available]
    if missing:
        raise InvalidInput(
            f"train.lora.target_modules: the model has no module(s) {', '.join(missing)}; it has: {', '.join(available)}"
        )
    return LoraConfig(
        r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
        target_modules=list(spec.lora.target_modules), bias="none", task_type="CAUSAL_LM",
    )
