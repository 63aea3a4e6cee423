"""What runs beside transformers' loop: progress and checkpoints to the store, tokens/s in every log line."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from trl import SFTTrainer

from synthtune.trainer.checkpoints import StoreCheckpoints


class SynthtuneSFTTrainer(SFTTrainer):  # type: ignore[misc]
    """TRL's SFTTrainer that adds ``tokens_per_s`` (non-padding tokens since the last log line) to each log line."""

    _last_tokens: int | None = None
    _last_time = 0.0

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            now, seen = time.perf_counter(), int(self.state.num_input_tokens_seen or 0)
            if self._last_tokens is not None and now > self._last_time:
                logs["tokens_per_s"] = round((seen - self._last_tokens) / (now - self._last_time), 2)
            self._last_tokens, self._last_time = seen, now
        super().log(logs, start_time)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(_ClockStart(self))


class _ClockStart(TrainerCallback):  # type: ignore[misc]
    """The first interval starts with the loop (after a resumed run's restored token count), not at construction."""

    def __init__(self, trainer: SynthtuneSFTTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.trainer._last_tokens, self.trainer._last_time = int(state.num_input_tokens_seen or 0), time.perf_counter()


class StoreSync(TrainerCallback):  # type: ignore[misc]
    """Progress (for a driver that may be on another pod) and every checkpoint into the store.

    With several workers each rank uploads its own RNG state first; rank 0 writes the marker only
    once every rank's files are in, so a checkpoint without its marker does not exist.
    """

    def __init__(self, checkpoints: StoreCheckpoints, rank: int, world: int, publish: bool,
                 on_log: Callable[[dict[str, Any]], None] | None) -> None:
        self.checkpoints, self.rank, self.world, self.publish, self.forward = checkpoints, rank, world, publish, on_log
        self.last_put = 0.0

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        info = {"step": state.global_step, "max_steps": state.max_steps, "logs": logs or {}}
        if self.forward is not None:
            self.forward(info)
        elif self.publish and (time.time() - self.last_put >= 2.0 or state.global_step >= state.max_steps):
            self.checkpoints.put_progress(info)
            self.last_put = time.time()

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        import torch.distributed as dist

        step = state.global_step
        local = Path(args.output_dir) / f"checkpoint-{step}"
        if self.world == 1:
            self.checkpoints.upload(local, step)
            return
        if self.rank != 0:
            self.checkpoints.upload_files(local, step, [p.name for p in local.glob(f"rng_state_{self.rank}.pth")])
        dist.barrier()
        if self.rank == 0:
            self.checkpoints.upload_files(local, step)
            self.checkpoints.mark_complete(step)
