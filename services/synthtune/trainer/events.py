"""TensorBoard event files from the trainer's log history, readable by ``tensorboard --logdir`` as they are.

Written once at the end from ``trainer.state.log_history``, which a resumed run restores from its
checkpoint: the events of a run killed and resumed still hold every step once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Log keys that are bookkeeping, not curves.
SKIP = {"step", "epoch", "total_flos"}


def tag(key: str) -> str:
    """``eval_loss`` -> ``eval/loss``; ``loss``, ``learning_rate``, ``grad_norm``, ``tokens_per_s`` -> ``train/<key>``."""
    return f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"


def write_events(history: list[dict[str, Any]], folder: Path) -> int:
    """One scalar per log key and step into ``folder``; returns how many were written."""
    from torch.utils.tensorboard import SummaryWriter

    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for entry in history:
            if "train_loss" in entry:  # the end-of-training summary line (mean loss of the run), not a step
                continue
            step = int(entry.get("step", 0))
            for key, value in entry.items():
                if key in SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                writer.add_scalar(tag(key), float(value), step)
                written += 1
    finally:
        writer.close()
    return written
