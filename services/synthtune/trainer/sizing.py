"""How a run is sized: sequences per pass, optimiser steps, evaluation interval, MFU, and settings that cannot train."""

from __future__ import annotations

import math

from synthtune.spec.train import TrainSpec

# bf16 dense peak FLOP/s by GPU name fragment, for the MFU estimate.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12, "V100": 125e12}

# Bytes a CPU forward+backward may spend on the logits path (logits, their softmax and gradient, in
# fp32): vocabulary x 4 bytes x 3 per token. SmolLM2's 49k vocabulary at 1,024 tokens makes that 0.6 GB a
# sequence, so 18 sequences in one pass (the thesis's batch) took 20 GB and was killed.
CPU_LOGITS_BUDGET = 2 * 1024**3


def peak_flops() -> float | None:
    """This GPU's bf16 dense peak, None on CPU or an unknown GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def mfu(parameters: int, tokens: int, seconds: float, method: str, peak: float | None) -> float | None:
    """Model FLOPs utilisation: 6 FLOPs a parameter a token for full fine-tuning (forward 2, backward 4), 4 with
    LoRA/QLoRA (the frozen weights get no weight gradient), over the GPU's peak."""
    if not peak or not seconds:
        return None
    per_token = 6 if method == "full" else 4
    return round(per_token * parameters * tokens / seconds / peak, 4)


def eval_interval(eval_steps: int, total_steps: int) -> int:
    """Evaluate every ``eval_steps``, but at least four times a run: a short run still gets a curve.

    transformers' Trainer also evaluates after the last step, so the final eval loss is always there.
    """
    return max(1, min(eval_steps, total_steps // 4))


def micro_batch(spec: TrainSpec, longest: int, vocab: int, world: int, on_gpu: bool) -> int:
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


def planned_steps(spec: TrainSpec, n_train: int, micro: int, accumulation: int, world: int) -> int:
    """Optimiser steps the run will take (as transformers' Trainer counts them)."""
    if spec.max_steps:
        return int(spec.max_steps)
    batches = math.ceil(n_train / (micro * world))
    per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    return max(1, math.ceil(spec.epochs * per_epoch))


def futile_settings(spec: TrainSpec, total_steps: int) -> list[str]:
    """Settings under which the weights can hardly move, each named, for a warning before training.

    A short run with the thesis's 300 warm-up steps never leaves the warm-up: at ``max_steps: 3`` the
    learning rate peaks at 1% of ``learning_rate``, and the tuned answers came out identical to the base's.
    """
    problems = []
    if spec.warmup_steps >= total_steps:
        peak = spec.learning_rate * total_steps / max(1, spec.warmup_steps)
        problems.append(f"train.warmup_steps ({spec.warmup_steps}) >= the {total_steps} training steps: the learning rate never "
                        f"leaves the warm-up and peaks at {peak:.3g} instead of train.learning_rate {spec.learning_rate:g}")
    if spec.learning_rate < 1e-7:
        problems.append(f"train.learning_rate {spec.learning_rate:g} is too small to change the weights")
    return problems
