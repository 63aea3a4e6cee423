"""The typed description of one training run, as the driver hands it to every worker (in-process or on a Ray pod)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from synthtune.spec.train import TrainSpec

# How the loss is restricted to the answers (see trainer/data.py):
# "assistant": the chat template marks assistant tokens with {% generation %} (TRL's assistant-only loss);
# "completion": a template without those markers; each assistant turn is the completion of the chat before it.
LossMask = Literal["assistant", "completion"]


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker on any pod needs; workers see neither the driver's disk nor its environment.

    ``data`` is the tokenised data itself (``{"train": rows, "validation": rows}``, each row
    ``input_ids`` plus the ``loss_mask`` column, ``assistant_masks`` or ``completion_mask``).
    ``model_path`` is the driver's resolution of ``base_model``; a worker where that path is
    absent resolves ``base_model`` again. Checkpoints, progress and (with ``publish``) the result
    go to ``store_uri`` under the adapter id. ``output_dir`` is the worker's local folder (a
    temporary one when None).
    """

    spec: TrainSpec
    method: Literal["qlora", "lora", "full"]
    model_path: str
    data: dict[str, list[dict[str, list[int]]]]
    store_uri: str
    artifact_id: str
    base_model: str | None = None
    base_dir: str | None = None
    loss_mask: LossMask = "completion"
    resume_step: int | None = None
    gradient_checkpointing: bool = False
    publish: bool = False
    output_dir: str | None = None

    def with_(self, **changes: Any) -> TrainJob:
        return replace(self, **changes)
