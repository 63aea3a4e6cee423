"""Run the training loop through Ray Train's TorchTrainer: in-process Ray on one node, or an existing cluster.

Where ``RAY_ADDRESS`` is set (a KubeRay RayJob's entrypoint, ``python3 -m synthtune.trainer.job``),
we connect to that cluster with ``ray.init(address="auto")``: the cluster has its resources, so
none are given. Otherwise Ray starts here with just the CPUs the workers ask for.

Workers may run on other pods, which see neither the driver's disk nor its environment: the
tokenised data travels in ``train_loop_config`` (a pickled TrainJob), the store's endpoint and credentials in the
runtime environment, and everything a worker produces (checkpoints, progress, the result)
goes to the store, from where the driver reads it.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from typing import Any

from synthtune.spec.train import ScalingSpec
from synthtune.trainer.config import TrainJob

# What a worker needs from the driver's environment: the store (S3 endpoint, credentials, CA),
# the offline switches and caches of Hugging Face and synthtune, and the import path.
FORWARD_PREFIXES = ("SYNTHTUNE_", "AWS_", "HF_", "TRANSFORMERS_")
FORWARD_NAMES = ("PYTHONPATH", "SSL_CERT_FILE", "TOKENIZERS_PARALLELISM")
# Secrets never travel in runtime_env (Ray keeps it in its GCS and shows it on the dashboard): pods get
# them from their Secret through envFrom, local workers inherit them from the driver's raylet.
NOT_FORWARDED = ("SYNTHTUNE_AUTH_TOKEN", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_MARKS = ("SECRET", "TOKEN", "PASSWORD")


def _secret(name: str) -> bool:
    upper = name.upper()
    return name in NOT_FORWARDED or upper.endswith("_KEY") or any(mark in upper for mark in SECRET_MARKS)


def worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables the workers get, minus those a submitted job's runtime_env already sets
    (Ray refuses to merge a ray.init runtime_env that repeats the job's keys)."""
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items()
           if (k.startswith(FORWARD_PREFIXES) or k in FORWARD_NAMES) and not _secret(k)}
    job = environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job:
        try:
            taken = ((json.loads(job).get("runtime_env") or {}).get("env_vars") or {}).keys()
        except (ValueError, AttributeError):
            taken = set()
        env = {k: v for k, v in env.items() if k not in taken}
    return env


def connect(scaling: ScalingSpec) -> bool:
    """Start or join Ray; True when this call did (so the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    env = worker_env()
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        # An existing cluster: Ray refuses num_cpus and other resources when joining one.
        ray.init(address=address if address.startswith("ray://") else "auto", runtime_env={"env_vars": env})
        return True
    if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        # Ray turns token auth on for a new local cluster and saves a fresh token to ~/.ray/auth_token,
        # which a read-only root filesystem (the images, under Kubernetes) refuses: hand it one in the
        # environment instead (the cluster's own processes inherit it).
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    cpus = max(2, int(scaling.workers * scaling.cpus_per_worker) + 1)
    for attempt in (1, 2):  # a loaded machine can miss Ray's node start-up timeout once
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": env})
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    return True


def _worker(config: dict[str, Any]) -> None:
    from synthtune.trainer.loop import train_worker

    train_worker(config["job"])


def run_with_ray(job: TrainJob, scaling: ScalingSpec) -> None:
    """Train on ``scaling.workers`` Ray workers; rank 0 publishes the result to the store."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    started_here = connect(scaling)
    try:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"job": job.with_(publish=True, output_dir=None)},
            scaling_config=ScalingConfig(
                num_workers=scaling.workers, use_gpu=scaling.gpus_per_worker > 0,
                resources_per_worker={"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.gpus_per_worker else {})},
            ),
            # Ray keeps no checkpoint of ours (they go to the store), so a local folder will do.
            run_config=RunConfig(storage_path=tempfile.mkdtemp(prefix="synthtune-ray-"), name="train"),
        )
        trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
