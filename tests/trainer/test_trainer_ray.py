"""Ray Train: joining an existing cluster (KubeRay RayJob), the workers' environment, two workers on one machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_helpers import OVERFIT

from store_view import artifact_ids
from synthtune.spec.train import ScalingSpec, TrainSpec


@pytest.fixture
def fake_ray(monkeypatch):
    import ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    return calls


def test_ray_address_joins_the_cluster_without_resource_arguments(fake_ray, monkeypatch):
    """A RayJob's entrypoint has RAY_ADDRESS: ray.init(num_cpus=...) would be refused there."""
    from synthtune.trainer.raytrain import connect

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.setenv("SYNTHTUNE_S3_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("SYNTHTUNE_AUTH_TOKEN", "not-for-workers")
    assert connect(ScalingSpec(workers=4, cpus_per_worker=8)) is True
    (call,) = fake_ray
    assert call["address"] == "auto"
    assert not {"num_cpus", "num_gpus", "resources", "object_store_memory", "include_dashboard"} & set(call)
    env = call["runtime_env"]["env_vars"]
    assert env["SYNTHTUNE_S3_ENDPOINT"] == "http://minio:9000" and env["AWS_ACCESS_KEY_ID"] == "key"
    assert "SYNTHTUNE_AUTH_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env  # pods get secrets through envFrom


def test_ray_client_address_is_passed_through(fake_ray, monkeypatch):
    from synthtune.trainer.raytrain import connect

    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    connect(ScalingSpec())
    assert fake_ray[0]["address"] == "ray://head:10001" and "num_cpus" not in fake_ray[0]


def test_without_ray_address_ray_starts_here_with_the_workers_cpus(fake_ray, monkeypatch):
    from synthtune.trainer.raytrain import connect

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    connect(ScalingSpec(workers=2, cpus_per_worker=2))
    assert fake_ray[0]["num_cpus"] == 5 and "address" not in fake_ray[0]


def test_worker_env_leaves_out_what_the_submitted_job_already_sets():
    """Ray refuses a ray.init runtime_env that repeats an env var of the RayJob's own runtime_env."""
    from synthtune.trainer.raytrain import worker_env

    job = {"runtime_env": {"env_vars": {"AWS_ACCESS_KEY_ID": "from-job"}, "pip": ["x"]}}
    env = worker_env({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "HF_HUB_OFFLINE": "1", "HOME": "/root",
                      "PYTHONPATH": "/app", "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job), "HF_TOKEN": "t"})
    assert env == {"HF_HUB_OFFLINE": "1", "PYTHONPATH": "/app"}


def test_secrets_never_travel_in_rays_runtime_env():
    """The store's secret key and session token, the service token and hub tokens stay out of runtime_env."""
    from synthtune.trainer.raytrain import worker_env

    env = worker_env({"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "s3-secret", "AWS_SESSION_TOKEN": "session",
                      "SYNTHTUNE_AUTH_TOKEN": "grpc", "HF_TOKEN": "hub", "SYNTHTUNE_S3_ENDPOINT": "http://minio:9000",
                      "SYNTHTUNE_DB_PASSWORD": "pw", "HF_API_KEY": "k"})
    assert env == {"AWS_ACCESS_KEY_ID": "id", "SYNTHTUNE_S3_ENDPOINT": "http://minio:9000"}


@pytest.mark.slow
def test_two_ray_workers_share_nothing_but_the_store(tmp_path, tokenizer, tiny_model, monkeypatch):
    """Two workers, each in its own folder as on two pods, the base model path absent "here": only the store
    connects them. Checkpoints hold both ranks' RNG state; rank 0 alone publishes the result; a resume works."""
    import ray

    from synthtune.store import open_store
    from synthtune.tbevents import read_scalars
    from synthtune.trainer.checkpoints import StoreCheckpoints
    from synthtune.trainer.config import TrainJob
    from synthtune.trainer.data import build_dataset
    from synthtune.trainer.raytrain import run_with_ray, worker_env

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "1")
    store = open_store(str(tmp_path / "store"))
    data = build_dataset(tokenizer, OVERFIT, 96, "truncate", 1)
    spec = TrainSpec.model_validate({"method": "lora", "max_steps": 4, "batch_size": 4, "learning_rate": 0.001, "warmup_steps": 0,
                                     "checkpoint_steps": 2, "lora": {"target_modules": ["q_proj", "v_proj"]}})
    job = TrainJob(spec=spec, method="lora", model_path=str(tmp_path / "only-on-the-driver"), base_model=str(tiny_model),
                   data={"train": data.train, "validation": data.validation}, store_uri=store.uri, artifact_id="adapter-two",
                   loss_mask=data.loss_mask, output_dir=str(tmp_path / "driver-only"))
    ckpt = StoreCheckpoints(store, "adapter-two")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env={"env_vars": worker_env()})
    try:
        run_with_ray(job, ScalingSpec(workers=2, cpus_per_worker=1))
        assert not Path(str(job.output_dir)).exists()  # the workers never write into the driver's folder
        assert ckpt.steps() == [4]  # the one at 2 is dropped once 4 is complete
        marker = store.get_json("work/train/adapter-two/checkpoint-4/COMPLETE")
        assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(marker["files"])
        result = ckpt.fetch_result(tmp_path / "result")
        assert result is not None
        summary = json.loads((result / "summary.json").read_text())
        assert summary["workers"] == 2 and summary["steps"] == 4 and summary["micro_batch_size"] == 2 and summary["eval_loss"]
        assert (result / "adapter_model.safetensors").is_file() and (result / "adapter_config.json").is_file()
        assert ckpt.get_progress()["step"] == 4
        # A restarted job resumes on both ranks from the checkpoint in the store.
        ckpt.clear_result()
        run_with_ray(job.with_(spec=spec.model_copy(update={"max_steps": 6}), resume_step=4), ScalingSpec(workers=2, cpus_per_worker=1))
        result2 = ckpt.fetch_result(tmp_path / "result2")
        resumed = json.loads((result2 / "summary.json").read_text())
        assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 6 and resumed["steps_this_run"] == 2
        assert resumed["train_steps"] == [1, 2, 3, 4, 5, 6]
        # The TensorBoard events rank 0 published hold every step once, the restored ones included.
        assert [s for s, _ in read_scalars(result2 / "runs")["train/loss"]] == [1, 2, 3, 4, 5, 6]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_bad_spec_found_inside_a_ray_worker_is_still_invalid_input(file_store, tiny_model, monkeypatch):
    """Missing target modules surface from the worker as InvalidInput (exit 2), not as Ray's wrapper (exit 1)."""
    from synthtune.errors import InvalidInput
    from synthtune.progress import Progress
    from synthtune.spec import load_spec_text
    from synthtune.trainer import run

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with file_store.create("synthetic", [], {"rows": 1}, "test") as w:
        w.write_jsonl("data.jsonl", OVERFIT)
        ref = w.commit()
    spec = load_spec_text("version: 1\nname: t\nsource: {paths: [a.csv]}\n"
                          f"train: {{base_model: {tiny_model}, method: lora, max_steps: 2, lora: {{target_modules: [wq]}}}}\n")
    with pytest.raises(InvalidInput, match=r"no module\(s\) wq; it has: .*q_proj"):
        run(spec, {"synthetic": ref}, file_store, Progress("train"), method="record_qa")
    assert artifact_ids(file_store, "adapter") == []
