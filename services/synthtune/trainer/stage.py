"""The train stage: one adapter per generation method, checkpoints in the store, resume after a kill.

The artifact is of kind ``adapter`` whatever the method; ``training_log.json`` and the
manifest's stats say which ``method`` trained it and in what ``format``:

- ``format: peft_lora`` (methods ``lora`` and ``qlora``): ``adapter_model.safetensors`` and
  ``adapter_config.json``, a PEFT LoRA adapter of ``base_model`` (``PeftModel.from_pretrained``,
  or vLLM's ``LoRARequest``); with ``train.merge``, also ``merged/`` (a whole model).
- ``format: full_model`` (method ``full``): there is no adapter to apply; the artifact folder
  *is* the fine-tuned model, with ``config.json``, ``model.safetensors`` (or shards with
  ``model.safetensors.index.json``), ``generation_config.json`` and the tokenizer files. An
  evaluator loads it in place of the base model (``AutoModelForCausalLM.from_pretrained(folder)``,
  ``vllm.LLM(model=folder)``), never through PEFT.

Both formats carry ``training_log.json`` (losses per step, eval losses, runtime, tokens/s,
parameters, MFU on GPU, ``base_model``), ``loss_curve.png``, ``rejects.jsonl``, TensorBoard event
files under ``runs/`` (``train/loss``, ``train/learning_rate``, ``train/grad_norm``,
``train/tokens_per_s``, ``eval/loss`` per step) and ``README.md``, a Hugging Face model card.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput, PermanentError, StageSkipped
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.spec.pipeline import PipelineSpec
from synthtune.spec.train import TrainSpec
from synthtune.store import ArtifactRef, Store
from synthtune.trainer.checkpoints import StoreCheckpoints
from synthtune.trainer.config import TrainJob
from synthtune.trainer.data import FALLBACK_WARNING, Prepared, build_dataset
from synthtune.trainer.model import check_model_folder, gradient_checkpointing, pick_method
from synthtune.trainer.modelcard import model_card
from synthtune.trainer.sizing import futile_settings, planned_steps

PRODUCER = "synthtune.trainer"
log = logging.getLogger(__name__)


class _Forward:
    """Forward the worker's step count and losses to progress."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.last = -1

    def __call__(self, state: dict[str, Any]) -> None:
        step = state.get("step", 0)
        if step == self.last:
            return
        if self.last < 0:
            self.progress.start(state.get("max_steps") or None, self.progress.description or "training")
        self.progress.advance(step - max(self.last, 0))
        logs = state.get("logs") or {}
        if logs.get("loss") is not None:
            self.progress.note(f"step {step}: loss {logs['loss']:.4f}")
        self.last = step


def _watch(forward: _Forward, checkpoints: StoreCheckpoints, stop: threading.Event) -> None:
    """Poll the progress rank 0 writes to the store (it may run on another pod)."""
    while not stop.wait(1.0):
        state = checkpoints.get_progress()
        if state:
            forward(state)


def plot_losses(summary: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(summary["train_steps"], summary["train_loss"], label="train loss")
    if summary["eval_loss"]:
        ax.plot(summary["eval_steps"], summary["eval_loss"], marker="o", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"Training loss ({summary['method']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(spec: PipelineSpec, inputs: Mapping[str, Any], store: Store, progress: Progress, method: str) -> ArtifactRef:
    """Fine-tune the base model on one method's synthetic data into an `adapter` artifact.

    Raises StageSkipped when the method's synthetic data holds nothing trainable, InvalidInput
    or NotFound for a bad spec (base model, target modules). The ``prepared`` input is not
    used: its validation records are raw records, not chats in the method's format, so the
    evaluation loss is computed on examples held out of the synthetic data instead.
    """
    if inputs.get("synthetic") is None:
        raise InvalidInput(f"train {method}: needs the synthetic artifact (run generate first)")
    synthetic = store.open(inputs["synthetic"])
    train = spec.train
    kind = pick_method(train)
    config = {"train": train.model_dump(exclude={"tracking"}), "resolved_method": kind}  # where it is logged does not change the model
    art_id = store.artifact_id("adapter", [synthetic.id], config)
    if (cached := store.find(art_id)) is not None:
        progress.note(f"reusing cached {art_id}")
        return cached
    model_path = resolve_model(train.base_model, spec.base_dir, store)
    data = _tokenise(train, model_path, list(synthetic.iter_jsonl("data.jsonl")), method, progress)
    checkpoints = StoreCheckpoints(store, art_id)
    with checkpoints.claim(progress.note):  # one trainer per adapter, even for two runs of one pipeline at once
        if (found := store.find(art_id)) is not None:
            progress.note(f"reusing {art_id}, trained by another run")
            return found
        return _train_claimed(spec, store, progress, method, synthetic, config, art_id, model_path, data, checkpoints)


def _train_claimed(spec: PipelineSpec, store: Store, progress: Progress, method: str, synthetic: Any, config: dict[str, Any],
                   art_id: str, model_path: str, data: Prepared, checkpoints: StoreCheckpoints) -> ArtifactRef:
    """Train (resuming from the latest checkpoint in the store) and commit the adapter; this process holds the claim."""
    train, kind = spec.train, config["resolved_method"]
    checkpoints.clear_result()  # a result left by an earlier attempt that died before its artifact
    job = TrainJob(spec=train, method=kind, model_path=model_path, base_model=train.base_model, base_dir=spec.base_dir,
                   data={"train": data.train, "validation": data.validation}, store_uri=store.uri, artifact_id=art_id,
                   loss_mask=data.loss_mask, resume_step=checkpoints.latest_step(), gradient_checkpointing=gradient_checkpointing(train))
    if job.gradient_checkpointing != train.gradient_checkpointing:
        progress.note("gradient checkpointing is off on CPU unless train.gradient_checkpointing is set explicitly")
    for problem in futile_settings(train, planned_steps(train, len(data.train), train.batch_size, 1, 1)):
        _warn(progress, f"train {method}: the model may not change: {problem}")
    work = Path(tempfile.mkdtemp(prefix=f"synthtune-train-{art_id}-"))
    try:
        progress.start(train.max_steps, f"training {method} ({kind}) on {len(data.train)} examples, {len(data.validation)} held out")
        if job.resume_step is not None:
            progress.note(f"resuming from the checkpoint at step {job.resume_step}")
        result = _train(job, work, checkpoints, progress)
        if result is None or not (result / "summary.json").is_file():
            raise PermanentError(f"train {method}: training ended but rank 0 left no result in {store.uri}/{checkpoints.prefix}/result")
        lineage = {"prepared": (synthetic.parents or [None])[0], "synthetic": synthetic.id, "adapter": art_id}
        ref = _commit(store, synthetic.id, config, art_id, result, data, train, method, lineage)
        checkpoints.clear()
        summary = store.open(ref).read_json("training_log.json")
        if train.tracking.mlflow is not None:
            _track(train, method, lineage, ref, result / "runs", progress)
        progress.note(f"trained {method}: {summary['steps']} steps, final loss {summary['train_loss'][-1]:.4f}" if summary["train_loss"] else f"trained {method}")
        return ref
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _warn(progress: Progress, message: str) -> None:
    log.warning(message)
    progress.note(f"warning: {message}")


def _tokenise(train: TrainSpec, model_path: str, examples: list[dict[str, Any]], method: str, progress: Progress) -> Prepared:
    """Tokenised train/validation rows; the fallback masking, truncations and rejections are said before training."""
    check_model_folder(model_path, train)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=train.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"train.base_model {train.base_model!r}: cannot load its tokenizer ({exc})") from None
    try:
        data = build_dataset(tokenizer, examples, train.max_seq_len, train.overlong, train.seed)
    except StageSkipped as exc:
        raise StageSkipped(f"train {method}: {exc}; the other methods go on") from None
    if data.loss_mask == "completion":
        _warn(progress, f"train {method}: " + FALLBACK_WARNING.format(model=train.base_model))
    if data.truncated:
        progress.note(f"train {method}: {data.truncated} of {len(examples)} examples truncated to max_seq_len {train.max_seq_len} tokens")
    if data.rejected:
        reasons = Counter(r["reason"] for r in data.rejected)
        progress.note(f"train {method}: {len(data.rejected)} of {len(examples)} examples rejected ("
                      + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()) + "), see rejects.jsonl")
    return data


def _train(job: TrainJob, work: Path, checkpoints: StoreCheckpoints, progress: Progress) -> Path | None:
    """Train through Ray (the workers publish to the store) or in this process; the result folder."""
    forward = _Forward(progress)
    try:
        if job.spec.scaling.use_ray:
            from synthtune.trainer.raytrain import run_with_ray

            stop = threading.Event()
            watcher = threading.Thread(target=_watch, args=(forward, checkpoints, stop), daemon=True)
            watcher.start()
            try:
                run_with_ray(job, job.spec.scaling)
            finally:
                stop.set()
                watcher.join(timeout=5)
            return checkpoints.fetch_result(work / "result")
        from synthtune.trainer.loop import train_worker

        train_worker(job.with_(output_dir=str(work)), on_log=forward)
        return work / "result"
    except Exception as exc:  # noqa: BLE001 - re-raised as the domain error Ray wrapped
        raise _unwrap(exc) from None


def _commit(store: Store, parent: str, config: dict[str, Any], art_id: str, result: Path, data: Prepared, train: TrainSpec,
            method: str, lineage: dict[str, Any]) -> ArtifactRef:
    summary = json.loads((result / "summary.json").read_text())
    summary.update({"examples": len(data.train), "validation_examples": len(data.validation), "truncated": data.truncated,
                    "rejected": len(data.rejected), "base_model": train.base_model})
    with store.create("adapter", [parent], config, PRODUCER, art_id) as w:
        for path in sorted(result.rglob("*")):
            if path.is_file() and path.name != "summary.json":
                shutil.copyfile(path, w.path(path.relative_to(result).as_posix()))
        w.write_json("training_log.json", summary)
        w.write_jsonl("rejects.jsonl", data.rejected)
        w.path("README.md").write_text(model_card(summary, train, method, lineage, store.uri), encoding="utf-8")
        plot_losses(summary, w.path("loss_curve.png"))
        w.stats.update({k: summary[k] for k in ("method", "format", "steps", "runtime_s", "tokens_per_s", "examples", "validation_examples",
                                                 "truncated", "rejected")})
        return w.commit()


def _track(train: TrainSpec, method: str, lineage: dict[str, Any], ref: ArtifactRef, events: Path, progress: Progress) -> None:
    """Log the trained adapter to MLflow; a warning, never a failure, when MLflow does not answer."""
    from synthtune.tbevents import read_scalars
    from synthtune.trainer.mlflow_log import flat_params, log_run

    assert train.tracking.mlflow is not None
    tags = {"synthtune.adapter_uri": ref.uri, "synthtune.generation_method": method,
            **{f"synthtune.{k}": str(v) for k, v in lineage.items() if v}}
    run_id = log_run(train.tracking.mlflow, f"{method}-{ref.id}", flat_params(train.model_dump(exclude={"tracking"})),
                     read_scalars(events), tags, lambda m: _warn(progress, f"train {method}: {m}"))
    if run_id:
        progress.note(f"MLflow run {run_id} in experiment {train.tracking.mlflow.experiment!r} at {train.tracking.mlflow.tracking_uri}")


def _unwrap(exc: BaseException) -> BaseException:
    """Ray wraps worker errors; surface our own error types with their messages."""
    from synthtune.errors import SynthtuneError

    seen = exc
    for _ in range(6):
        if isinstance(seen, SynthtuneError):
            return seen
        cause = getattr(seen, "cause", None) or seen.__cause__ or getattr(seen, "error", None)
        if cause is None or cause is seen:
            break
        seen = cause
    text = str(exc)
    for cls in (InvalidInput, PermanentError):
        marker = f"synthtune.errors.{cls.__name__}: "
        if marker in text:
            return cls(text.split(marker, 1)[1].strip().splitlines()[0])
    return exc
