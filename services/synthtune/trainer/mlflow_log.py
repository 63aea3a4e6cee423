"""Optional MLflow tracking (``train.tracking.mlflow``): one MLflow run per trained adapter.

Logged once the artifact is committed, from the same log history as the TensorBoard events: the
training settings as params, every curve per step as metrics, the adapter's store URI as a tag.
Tracking never fails training: a server that does not answer is tried again a few times, then
the run is given up on with a warning (the numbers stay in the artifact).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from synthtune.spec.train import MlflowSpec

log = logging.getLogger(__name__)

TRIES = 3
# Fail fast on each try: MLflow's own HTTP client otherwise retries for minutes.
FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def flat_params(spec: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"lora": {"r": 16}}`` -> ``{"lora.r": "16"}`` (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:6000]
    return out


def _log_once(cfg: MlflowSpec, run_name: str, params: dict[str, str], curves: dict[str, list[tuple[int, float]]],
              tags: dict[str, str]) -> str:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    now = int(time.time() * 1000)
    metrics = [Metric(name.replace("/", "_"), value, now, step) for name, points in curves.items() for step, value in points]
    param_list = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(param_list), 100):  # MLflow's batch limits: 100 params, 1,000 metrics
        client.log_batch(run.info.run_id, params=param_list[i : i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
    client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def log_run(cfg: MlflowSpec, run_name: str, params: dict[str, str], curves: dict[str, list[tuple[int, float]]],
            tags: dict[str, str], warn: Callable[[str], None], pause_s: float = 2.0) -> str | None:
    """The MLflow run id, or None (and a warning) when MLflow could not be reached after ``TRIES`` tries."""
    saved = {k: os.environ.get(k) for k in FAST_HTTP}
    os.environ.update({k: v for k, v in FAST_HTTP.items() if saved[k] is None})
    try:
        for attempt in range(1, TRIES + 1):
            try:
                return _log_once(cfg, run_name, params, curves, tags)
            except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, training has succeeded
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                log.info("MLflow try %d of %d failed: %s", attempt, TRIES, error)
                if attempt < TRIES:
                    time.sleep(pause_s * attempt)
        warn(f"MLflow at {cfg.tracking_uri} did not take the run after {TRIES} tries ({error}); "
             "training is not affected, its numbers are in the adapter's training_log.json and runs/")
        return None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
