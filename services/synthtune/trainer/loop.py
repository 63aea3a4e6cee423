"""One training run (a Ray Train worker or plain in-process) on pre-tokenised chats.

transformers' Trainer with our assistant-only labels: TRL's SFTTrainer (1.x) refuses LoRA on
``lm_head``, which the reference thesis adapts, so we build the labels ourselves and train with
the Trainer underneath it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput, PermanentError

# bf16 dense peak FLOP/s by GPU name fragment, for the MFU estimate.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12, "V100": 125e12}


def _peak_flops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def with_labels(row: dict[str, list[int]]) -> dict[str, list[int]]:
    """Labels are the input ids on assistant tokens and -100 elsewhere: the loss is the answer's only."""
    return {"input_ids": row["input_ids"], "labels": [t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)]}


def collator(pad_id: int, packing: bool) -> Any:
    """Right-padding collator, or transformers' padding-free flattening collator when packing."""
    import torch

    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening()

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Train per ``config`` (paths, spec dump, store uri, adapter id); returns the run's summary."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

    from synthtune.spec.train import TrainSpec
    from synthtune.store import open_store
    from synthtune.trainer.checkpoints import StoreCheckpoints
    from synthtune.trainer.model import add_lora, load_model, pick_precision

    spec = TrainSpec.model_validate(config["train_spec"])
    method = config["method"]
    out_dir = Path(config["output_dir"])
    progress_file = out_dir / "progress.json"
    rows = json.loads(Path(config["data_file"]).read_text())
    tokenizer = AutoTokenizer.from_pretrained(config["model_path"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(spec.seed)
    model = load_model(config["model_path"], spec, method)
    if method in ("lora", "qlora"):
        model = add_lora(model, spec)
    precision = pick_precision(spec) if method != "qlora" else ("bf16" if spec.quantization.compute_dtype == "bfloat16" else "fp16")
    on_gpu = torch.cuda.is_available()
    micro = spec.micro_batch_size or spec.batch_size
    accumulation = max(1, math.ceil(spec.batch_size / micro))
    has_eval = bool(rows["validation"])
    save_steps = spec.eval_steps if spec.early_stopping_patience else spec.checkpoint_steps
    args = TrainingArguments(
        output_dir=str(out_dir / "hf"),
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.scheduler,
        warmup_steps=spec.warmup_steps,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps or -1,
        optim=spec.optimizer if (on_gpu or "paged" not in spec.optimizer and "8bit" not in spec.optimizer) else "adamw_torch",
        logging_steps=1,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=spec.eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        load_best_model_at_end=bool(spec.early_stopping_patience and has_eval),
        metric_for_best_model="eval_loss" if spec.early_stopping_patience and has_eval else None,
        bf16=precision == "bf16" and on_gpu,
        fp16=precision == "fp16" and on_gpu,
        gradient_checkpointing=spec.gradient_checkpointing and on_gpu,
        seed=spec.seed,
        data_seed=spec.seed,
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    checkpoints = StoreCheckpoints(open_store(config["store_uri"]), config["artifact_id"])
    started = time.time()

    class Sync(TrainerCallback):  # type: ignore[misc]
        def on_log(self, a: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            progress_file.write_text(json.dumps({"step": state.global_step, "max_steps": state.max_steps, "logs": logs or {}}))

        def on_save(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                checkpoints.upload(Path(a.output_dir) / f"checkpoint-{state.global_step}", state.global_step)

    callbacks: list[Any] = [Sync()]
    if spec.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience))
    trainer = Trainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list([with_labels(r) for r in rows["train"]]),
        eval_dataset=Dataset.from_list([with_labels(r) for r in rows["validation"]]) if has_eval else None,
        data_collator=collator(tokenizer.pad_token_id, spec.packing),
        callbacks=callbacks,
    )
    resume = None
    latest = checkpoints.latest_step()
    if latest is not None:
        resume = str(checkpoints.download(latest, out_dir / "hf"))
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except torch.OutOfMemoryError:
        raise PermanentError(
            f"out of GPU memory at micro_batch_size={micro}, max_seq_len={spec.max_seq_len}: lower train.micro_batch_size "
            "or train.max_seq_len, enable gradient_checkpointing, or use method: qlora"
        ) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise PermanentError(f"out of memory: lower train.micro_batch_size or train.max_seq_len, or use method: qlora ({exc})") from None
        raise
    runtime = time.time() - started
    adapter_dir = out_dir / "adapter"
    trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
    if spec.merge and method != "full":
        trainer.model.merge_and_unload().save_pretrained(out_dir / "merged", safe_serialization=True)
        tokenizer.save_pretrained(out_dir / "merged")
    history = trainer.state.log_history
    train_loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_loss = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    train_runtime = float(result.metrics.get("train_runtime", runtime))
    params = sum(p.numel() for p in trainer.model.parameters())
    peak = _peak_flops()
    summary = {
        "method": method, "precision": precision, "steps": trainer.state.global_step, "resumed_from_step": latest,
        "train_steps": [s for s, _ in train_loss], "train_loss": [float(v) for _, v in train_loss],
        "eval_steps": [s for s, _ in eval_loss], "eval_loss": [float(v) for _, v in eval_loss],
        "runtime_s": round(train_runtime, 3), "tokens": tokens, "tokens_per_s": round(tokens / train_runtime, 2) if train_runtime else 0.0,
        "parameters": params, "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else _rss_mb(),
        "mfu": round(4 * params * tokens / train_runtime / peak, 4) if peak and train_runtime else None,
        "batch_size": spec.batch_size, "micro_batch_size": micro, "gradient_accumulation": accumulation,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary))
    if not adapter_dir.exists():
        raise InvalidInput("training produced no adapter")
    return summary


def _rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
