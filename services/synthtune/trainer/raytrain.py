"""Run the training loop through Ray Train's TorchTrainer (Ray started in-process on one node)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from synthtune.spec.train import ScalingSpec


def _worker(config: dict[str, Any]) -> None:
    import ray.train

    from synthtune.trainer.loop import train_worker

    summary = train_worker(config)
    ray.train.report({k: v for k, v in summary.items() if isinstance(v, int | float | str)})


def run_with_ray(config: dict[str, Any], scaling: ScalingSpec) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    started_here = False
    if not ray.is_initialized():
        cpus = max(2, int(scaling.workers * scaling.cpus_per_worker) + 1)
        env = {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HF_HUB_OFFLINE", "SYNTHTUNE_CACHE", "SYNTHTUNE_MODEL_CACHE")}
        for attempt in (1, 2):  # a loaded machine can miss Ray's node start-up timeout once
            try:
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": env})
                break
            except Exception:
                ray.shutdown()
                if attempt == 2:
                    raise
        started_here = True
    try:
        trainer = TorchTrainer(
            _worker,
            train_loop_config=config,
            scaling_config=ScalingConfig(
                num_workers=scaling.workers, use_gpu=scaling.gpus_per_worker > 0,
                resources_per_worker={"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.gpus_per_worker else {})},
            ),
            run_config=RunConfig(storage_path=tempfile.mkdtemp(prefix="synthtune-ray-"), name="train"),
        )
        trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
