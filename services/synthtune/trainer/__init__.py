"""Training: QLoRA/LoRA/full fine-tuning as Ray jobs, checkpoints in the store, resume after preemption."""

from synthtune.trainer.stage import run

__all__ = ["run"]
