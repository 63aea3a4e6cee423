"""One training run (a Ray Train worker or plain in-process) through TRL's SFTTrainer, read top to bottom:

``setup`` loads the model and builds the trainer, ``train`` runs it (resuming from the store's
checkpoint), ``save`` writes the result on rank 0: the adapter (or whole model), ``summary.json``
and the TensorBoard event files under ``runs/``.

The data arrives tokenised with its loss mask (trainer/data.py); SFTTrainer turns the mask column
into labels, pads or packs, truncates at ``max_seq_len`` and wraps the model with PEFT.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.errors import PermanentError
from synthtune.trainer.config import TrainJob

LogFn = Callable[[dict[str, Any]], None]


@dataclass
class Run:
    """A set-up run: the trainer and what ``save`` reports about how it was sized."""

    job: TrainJob
    trainer: Any
    tokenizer: Any
    out_dir: Path
    rank: int
    world: int
    micro: int
    accumulation: int
    eval_every: int | None
    early: bool
    precision: str
    start: tuple[int, int] = (0, 0)  # (global step, tokens seen) of the checkpoint resumed from


def train_worker(job: TrainJob, on_log: LogFn | None = None) -> dict[str, Any] | None:
    """Train ``job``; on rank 0, write the result and return the run's summary (None on other ranks).

    Each worker trains in its own local folder (``job.output_dir``, else a temporary one). Rank 0
    alone writes ``<output_dir>/result/`` (the adapter, or for ``full`` the whole model and its
    tokenizer, ``summary.json`` and ``runs/``), published to the store when ``job.publish``.
    """
    out_dir = Path(job.output_dir) if job.output_dir else Path(tempfile.mkdtemp(prefix="synthtune-worker-"))
    try:
        run = setup(job, out_dir, on_log)
        result = train(run)
        return save(run, result) if run.rank == 0 else None
    finally:
        if not job.output_dir:
            shutil.rmtree(out_dir, ignore_errors=True)


def _rank_world() -> tuple[int, int]:
    """This process's rank and the world size (Ray Train sets up torch.distributed before calling us)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _model_path(job: TrainJob) -> str:
    """The driver's resolution of the base model if this machine has it, else resolve it here (another pod)."""
    if Path(job.model_path).exists() or not job.base_model:
        return job.model_path
    from synthtune.llm.models import resolve_model
    from synthtune.store import open_store

    # A model from the store is streamed into this pod's cache as it was into the driver's.
    return resolve_model(job.base_model, job.base_dir, open_store(job.store_uri))


def setup(job: TrainJob, out_dir: Path, on_log: LogFn | None) -> Run:
    """Load tokenizer and model, size the batches, and build the SFTTrainer with our callbacks."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, EarlyStoppingCallback

    from synthtune.store import open_store
    from synthtune.trainer.callbacks import StoreSync, SynthtuneSFTTrainer
    from synthtune.trainer.checkpoints import StoreCheckpoints
    from synthtune.trainer.model import load_model, lora_config, pick_precision
    from synthtune.trainer.sizing import eval_interval, micro_batch, planned_steps

    rank, world = _rank_world()
    spec, rows = job.spec, job.data
    model_path = _model_path(job)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=spec.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(spec.seed)
    model = load_model(model_path, spec, job.method, job.gradient_checkpointing)
    peft_config = lora_config(model, spec) if job.method in ("lora", "qlora") else None
    q = spec.quantization
    precision = pick_precision(spec) if job.method != "qlora" else ("bf16" if q.compute_dtype == "bfloat16" else "fp16")
    # batch_size is the effective batch over all workers: each takes its share, accumulating when needed.
    longest = max((len(r["input_ids"]) for r in rows["train"]), default=1)
    vocab = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
    micro = micro_batch(spec, longest, vocab, world, torch.cuda.is_available())
    accumulation = max(1, math.ceil(spec.batch_size / (micro * world)))
    has_eval = bool(rows["validation"])
    eval_every = eval_interval(spec.eval_steps, planned_steps(spec, len(rows["train"]), micro, accumulation, world)) if has_eval else None
    early = bool(spec.early_stopping_patience and has_eval)
    args = sft_config(job, out_dir, micro, accumulation, eval_every, early, precision)
    if (args.world_size, args.process_index) != (world, rank):
        raise PermanentError(f"transformers sees process {args.process_index} of {args.world_size}, torch.distributed {rank} of {world}")
    checkpoints = StoreCheckpoints(open_store(job.store_uri), job.artifact_id)
    callbacks: list[Any] = [StoreSync(checkpoints, rank, world, job.publish, on_log)]
    if early:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience))
    trainer = SynthtuneSFTTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
        train_dataset=Dataset.from_list(rows["train"]),
        eval_dataset=Dataset.from_list(rows["validation"]) if has_eval else None,
    )
    return Run(job, trainer, tokenizer, out_dir, rank, world, micro, accumulation, eval_every, early, precision)


def sft_config(job: TrainJob, out_dir: Path, micro: int, accumulation: int, eval_every: int | None, early: bool, precision: str) -> Any:
    """TRL's SFTConfig from the spec: the thesis's schedule and optimiser, the loss on the answers only."""
    import torch
    from trl import SFTConfig

    spec, on_gpu = job.spec, torch.cuda.is_available()
    # paged and 8-bit optimisers are bitsandbytes CUDA kernels: plain AdamW on CPU.
    optim = spec.optimizer if on_gpu or ("paged" not in spec.optimizer and "8bit" not in spec.optimizer) else "adamw_torch"
    return SFTConfig(
        output_dir=str(out_dir / "hf"),
        per_device_train_batch_size=micro, per_device_eval_batch_size=micro, gradient_accumulation_steps=accumulation,
        learning_rate=spec.learning_rate, lr_scheduler_type=spec.scheduler, warmup_steps=spec.warmup_steps,
        num_train_epochs=spec.epochs, max_steps=spec.max_steps or -1, optim=optim,
        max_length=spec.max_seq_len, packing=spec.packing,
        # Pre-tokenised rows: SFTTrainer builds the labels from assistant_masks always, from completion_mask with this on.
        completion_only_loss=job.loss_mask == "completion",
        logging_steps=1,
        eval_strategy="steps" if eval_every else "no", eval_steps=eval_every,
        # Early stopping keeps the best model, which needs a checkpoint at every evaluation.
        save_strategy="steps", save_steps=eval_every if early else spec.checkpoint_steps, save_total_limit=2,
        load_best_model_at_end=early, metric_for_best_model="eval_loss" if early else None,
        bf16=precision == "bf16" and on_gpu, fp16=precision == "fp16" and on_gpu,
        gradient_checkpointing=job.gradient_checkpointing,
        use_cpu=not on_gpu,  # without it, transformers runs each Ray CPU worker as a lone process (no DDP)
        seed=spec.seed, data_seed=spec.seed,
        report_to="none",  # the event files are written from the log history at the end (complete after a resume too)
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0, disable_tqdm=True,
    )


def train(run: Run) -> Any:
    """Train, from the store's checkpoint when the job names one; an out-of-memory error says what to lower."""
    import torch

    from synthtune.store import open_store
    from synthtune.trainer.checkpoints import StoreCheckpoints

    job, spec = run.job, run.job.spec
    resume = None
    if job.resume_step is not None:
        checkpoints = StoreCheckpoints(open_store(job.store_uri), job.artifact_id)
        resume = str(checkpoints.download(job.resume_step, run.out_dir / "hf"))
    run.start = _tokens_at(resume)
    try:
        return run.trainer.train(resume_from_checkpoint=resume)
    except torch.OutOfMemoryError:
        raise PermanentError(
            f"out of GPU memory at micro_batch_size={run.micro}, max_seq_len={spec.max_seq_len}: lower train.micro_batch_size "
            "or train.max_seq_len, enable gradient_checkpointing, or use method: qlora"
        ) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise PermanentError(f"out of memory: lower train.micro_batch_size or train.max_seq_len, or use method: qlora ({exc})") from None
        raise


def _tokens_at(checkpoint: str | None) -> tuple[int, int]:
    """(global step, tokens seen) recorded in a checkpoint's trainer state; (0, 0) without one."""
    if checkpoint is None:
        return 0, 0
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return 0, 0
    return int(state.get("global_step") or 0), int(state.get("num_input_tokens_seen") or 0)


def save(run: Run, result: Any) -> dict[str, Any]:
    """Rank 0: the adapter or model, ``summary.json`` and the TensorBoard events into ``result/``; published when asked."""
    from synthtune.trainer.events import write_events

    job, trainer = run.job, run.trainer
    result_dir = run.out_dir / "result"
    result_dir.mkdir(parents=True, exist_ok=True)
    if job.method == "full":  # a whole model: its tokenizer makes the folder loadable on its own
        trainer.model.save_pretrained(result_dir, safe_serialization=True)
        run.tokenizer.save_pretrained(result_dir)
    else:  # the vocabulary is unchanged: the adapter need not carry a copy of the base embeddings (PEFT's "auto" would)
        trainer.model.save_pretrained(result_dir, safe_serialization=True, save_embedding_layers=False)
        if job.spec.merge:
            trainer.model.merge_and_unload().save_pretrained(result_dir / "merged", safe_serialization=True)
            run.tokenizer.save_pretrained(result_dir / "merged")
    summary = summarise(run, result)
    (result_dir / "summary.json").write_text(json.dumps(summary))
    write_events(trainer.state.log_history, result_dir / "runs")
    if job.publish:
        from synthtune.store import open_store
        from synthtune.trainer.checkpoints import StoreCheckpoints

        StoreCheckpoints(open_store(job.store_uri), job.artifact_id).publish_result(result_dir)
    return summary


def summarise(run: Run, result: Any) -> dict[str, Any]:
    """training_log.json's numbers: losses per step, speed of this process's own steps, memory, MFU, sizing."""
    import torch

    from synthtune.trainer.model import count_parameters
    from synthtune.trainer.sizing import mfu, peak_flops

    job, state = run.job, run.trainer.state
    start_step, start_tokens = run.start
    train_loss = [(h["step"], h["loss"]) for h in state.log_history if "loss" in h]
    eval_loss = [(h["step"], h["eval_loss"]) for h in state.log_history if "eval_loss" in h]
    tokens = int(state.num_input_tokens_seen or 0)
    tokens_run = max(0, tokens - start_tokens)  # a resumed run's speed counts only what this process trained
    runtime = float(result.metrics.get("train_runtime", 0.0))
    params = count_parameters(run.trainer.model)
    on_gpu = torch.cuda.is_available()
    return {
        "method": job.method, "format": "full_model" if job.method == "full" else "peft_lora",
        "precision": run.precision, "loss_mask": job.loss_mask, "steps": state.global_step, "resumed_from_step": job.resume_step,
        "train_steps": [s for s, _ in train_loss], "train_loss": [float(v) for _, v in train_loss],
        "eval_steps": [s for s, _ in eval_loss], "eval_loss": [float(v) for _, v in eval_loss],
        "eval_every": run.eval_every, "early_stopped": run.early and state.global_step < state.max_steps,
        "best_eval_loss": state.best_metric if run.early else (min(v for _, v in eval_loss) if eval_loss else None),
        "runtime_s": round(runtime, 3), "tokens": tokens, "tokens_this_run": tokens_run,
        "steps_this_run": state.global_step - start_step,
        "tokens_per_s": round(tokens_run / runtime, 2) if runtime else 0.0,
        "parameters": params, "trainable_parameters": sum(p.numel() for p in run.trainer.model.parameters() if p.requires_grad),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if on_gpu else _rss_mb(),
        "mfu": mfu(params, tokens_run, runtime, job.method, peak_flops()),
        "batch_size": job.spec.batch_size, "micro_batch_size": run.micro, "gradient_accumulation": run.accumulation,
        "workers": run.world, "gradient_checkpointing": job.gradient_checkpointing, "packing": job.spec.packing,
    }


def _rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
