"""One training run (a Ray Train worker or plain in-process) on pre-tokenised chats.

transformers' Trainer with our assistant-only labels: TRL's SFTTrainer (1.x) refuses LoRA on
``lm_head``, which the reference thesis adapts, so we build the labels ourselves and train with
the Trainer underneath it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthtune.errors import PermanentError

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


def _rank_world() -> tuple[int, int]:
    """This process's rank and the world size (Ray Train sets up torch.distributed before calling us)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def eval_interval(eval_steps: int, total_steps: int) -> int:
    """Evaluate every ``eval_steps``, but at least four times a run: a short run still gets a curve.

    transformers' Trainer also evaluates after the last step, so the final eval loss is always there.
    """
    return max(1, min(eval_steps, total_steps // 4))


# Bytes a CPU forward+backward may spend on the logits path (logits, their softmax and gradient, in
# fp32): vocabulary x 4 bytes x 3 per token. SmolLM2's 49k vocabulary at 1,024 tokens makes that 0.6 GB a
# sequence, so 18 sequences in one pass (the thesis's batch) took 20 GB and was killed.
CPU_LOGITS_BUDGET = 2 * 1024**3


def micro_batch(spec: Any, longest: int, vocab: int, world: int, on_gpu: bool) -> int:
    """Sequences per forward pass: the spec's micro_batch_size, else each worker's share of the
    batch, cut on CPU so that the logits of one pass stay within CPU_LOGITS_BUDGET (gradient
    accumulation makes up the rest of the batch). On GPU an out-of-memory error names what to lower."""
    if spec.micro_batch_size:
        return int(spec.micro_batch_size)
    share = math.ceil(spec.batch_size / world)
    if on_gpu:
        return share
    per_sequence = max(1, longest) * max(1, vocab) * 4 * 3
    return max(1, min(share, CPU_LOGITS_BUDGET // per_sequence))


def planned_steps(spec: Any, n_train: int, micro: int, accumulation: int, world: int) -> int:
    """Optimiser steps the run will take (as transformers' Trainer counts them)."""
    if spec.max_steps:
        return int(spec.max_steps)
    batches = math.ceil(n_train / (micro * world))
    per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    return max(1, math.ceil(spec.epochs * per_epoch))


def _model_path(config: dict[str, Any]) -> str:
    """The driver's resolution of the base model if this machine has it, else resolve it here (another pod)."""
    path = config["model_path"]
    if Path(path).exists() or not config.get("base_model"):
        return path
    from synthtune.llm.models import resolve_model
    from synthtune.store import open_store

    # A model from the store is streamed into this pod's cache as it was into the driver's.
    store = open_store(config["store_uri"]) if config.get("store_uri") else None
    return resolve_model(config["base_model"], config.get("base_dir"), store)


def _tokens_at(checkpoint: str | None) -> tuple[int, int]:
    """(global step, tokens seen) recorded in a checkpoint's trainer state; (0, 0) without one."""
    if checkpoint is None:
        return 0, 0
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return 0, 0
    return int(state.get("global_step") or 0), int(state.get("num_input_tokens_seen") or 0)


def train_worker(config: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Train per ``config``; on rank 0, write the result and return the run's summary (None on other ranks).

    ``config`` holds everything a worker on any pod needs: the spec dump, the method, the base
    model (the driver's local path, and its name to resolve again where that path is absent),
    the tokenised data itself (``data``), the store URI and adapter id (checkpoints, progress
    and, with ``publish``, the result go there), and ``resume_step``, the checkpoint to resume
    from. Each worker trains in its own local folder (``output_dir`` when the caller gives one).
    Rank 0 alone writes outputs: ``<output_dir>/result/`` (the adapter, or for ``full`` the
    whole model and its tokenizer, and ``summary.json``), published to the store when asked.
    """
    out_dir = Path(config["output_dir"]) if config.get("output_dir") else Path(tempfile.mkdtemp(prefix="synthtune-worker-"))
    try:
        return _train(config, out_dir, on_log)
    finally:
        if not config.get("output_dir"):
            shutil.rmtree(out_dir, ignore_errors=True)


def _train(config: dict[str, Any], out_dir: Path, on_log: Callable[[dict[str, Any]], None] | None) -> dict[str, Any] | None:
    import torch
    import torch.distributed as dist
    from datasets import Dataset
    from transformers import AutoTokenizer, EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

    from synthtune.spec.train import TrainSpec
    from synthtune.store import open_store
    from synthtune.trainer.checkpoints import StoreCheckpoints
    from synthtune.trainer.model import add_lora, count_parameters, load_model, pick_precision

    rank, world = _rank_world()
    spec = TrainSpec.model_validate(config["train_spec"])
    method = config["method"]
    rows = config["data"]
    publish = bool(config.get("publish"))
    checkpointing = bool(config.get("gradient_checkpointing", False))
    model_path = _model_path(config)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=spec.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(spec.seed)
    model = load_model(model_path, spec, method, checkpointing)
    if method in ("lora", "qlora"):
        model = add_lora(model, spec)
    precision = pick_precision(spec) if method != "qlora" else ("bf16" if spec.quantization.compute_dtype == "bfloat16" else "fp16")
    on_gpu = torch.cuda.is_available()
    # batch_size is the effective batch over all workers: each takes its share, accumulating when needed.
    longest = max((len(r["input_ids"]) for r in rows["train"]), default=1)
    micro = micro_batch(spec, longest, int(getattr(model.config, "vocab_size", 0) or len(tokenizer)), world, on_gpu)
    accumulation = max(1, math.ceil(spec.batch_size / (micro * world)))
    has_eval = bool(rows["validation"])
    total = planned_steps(spec, len(rows["train"]), micro, accumulation, world)
    eval_every = eval_interval(spec.eval_steps, total)
    early = bool(spec.early_stopping_patience and has_eval)
    # Early stopping keeps the best model, which needs a checkpoint at every evaluation.
    save_steps = eval_every if early else spec.checkpoint_steps
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
        eval_steps=eval_every,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        bf16=precision == "bf16" and on_gpu,
        fp16=precision == "fp16" and on_gpu,
        gradient_checkpointing=checkpointing,
        use_cpu=not on_gpu,  # without it, transformers runs each Ray CPU worker as a lone process (no DDP)
        seed=spec.seed,
        data_seed=spec.seed,
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    if (args.world_size, args.process_index) != (world, rank):
        raise PermanentError(f"transformers sees process {args.process_index} of {args.world_size}, torch.distributed {rank} of {world}")
    checkpoints = StoreCheckpoints(open_store(config["store_uri"]), config["artifact_id"])

    class Sync(TrainerCallback):  # type: ignore[misc]
        last_put = 0.0

        def on_log(self, a: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not state.is_world_process_zero:
                return
            info = {"step": state.global_step, "max_steps": state.max_steps, "logs": logs or {}}
            if on_log is not None:
                on_log(info)
            elif publish and (time.time() - self.last_put >= 2.0 or state.global_step >= state.max_steps):
                checkpoints.put_progress(info)  # the driver may be on another pod: it polls the store
                self.last_put = time.time()

        def on_save(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            local = Path(a.output_dir) / f"checkpoint-{step}"
            if world == 1:
                checkpoints.upload(local, step)
                return
            # Each rank's own state (its RNG) first; the marker only once every rank's is in the store.
            if rank != 0:
                checkpoints.upload_files(local, step, [p.name for p in local.glob(f"rng_state_{rank}.pth")])
            dist.barrier()
            if rank == 0:
                checkpoints.upload_files(local, step)
                checkpoints.mark_complete(step)

    callbacks: list[Any] = [Sync()]
    if early:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience))
    trainer = Trainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list([with_labels(r) for r in rows["train"]]),
        eval_dataset=Dataset.from_list([with_labels(r) for r in rows["validation"]]) if has_eval else None,
        data_collator=collator(tokenizer.pad_token_id, spec.packing),
        callbacks=callbacks,
    )
    resume_step = config.get("resume_step")
    resume = str(checkpoints.download(resume_step, out_dir / "hf")) if resume_step is not None else None
    start_step, start_tokens = _tokens_at(resume)
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
    if rank != 0:
        return None
    result_dir = out_dir / "result"
    result_dir.mkdir(parents=True, exist_ok=True)
    if method == "full":
        trainer.model.save_pretrained(result_dir, safe_serialization=True)
    else:  # the vocabulary is unchanged: the adapter need not carry a copy of the base embeddings (PEFT's "auto" would)
        trainer.model.save_pretrained(result_dir, safe_serialization=True, save_embedding_layers=False)
    if method == "full":  # a whole model: its tokenizer makes the folder loadable on its own
        tokenizer.save_pretrained(result_dir)
    elif spec.merge:
        trainer.model.merge_and_unload().save_pretrained(result_dir / "merged", safe_serialization=True)
        tokenizer.save_pretrained(result_dir / "merged")
    history = trainer.state.log_history
    train_loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_loss = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    tokens_run = max(0, tokens - start_tokens)  # a resumed run's speed counts only what this process trained
    train_runtime = float(result.metrics.get("train_runtime", 0.0))
    params = count_parameters(trainer.model)
    peak = _peak_flops()
    summary = {
        "method": method, "format": "full_model" if method == "full" else "peft_lora",
        "precision": precision, "steps": trainer.state.global_step, "resumed_from_step": resume_step,
        "train_steps": [s for s, _ in train_loss], "train_loss": [float(v) for _, v in train_loss],
        "eval_steps": [s for s, _ in eval_loss], "eval_loss": [float(v) for _, v in eval_loss],
        "eval_every": eval_every if has_eval else None, "early_stopped": early and trainer.state.global_step < trainer.state.max_steps,
        "best_eval_loss": trainer.state.best_metric if early else (min(v for _, v in eval_loss) if eval_loss else None),
        "runtime_s": round(train_runtime, 3), "tokens": tokens, "tokens_this_run": tokens_run,
        "steps_this_run": trainer.state.global_step - start_step,
        "tokens_per_s": round(tokens_run / train_runtime, 2) if train_runtime else 0.0,
        "parameters": params, "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if on_gpu else _rss_mb(),
        "mfu": round(4 * params * tokens_run / train_runtime / peak, 4) if peak and train_runtime else None,
        "batch_size": spec.batch_size, "micro_batch_size": micro, "gradient_accumulation": accumulation, "workers": world,
        "gradient_checkpointing": checkpointing,
    }
    (result_dir / "summary.json").write_text(json.dumps(summary))
    if publish:
        checkpoints.publish_result(result_dir)
    return summary


def _rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
