"""The train stage: one adapter per generation method, checkpoints in the store, resume after a kill."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput, PermanentError
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import ArtifactRef, Store
from synthtune.trainer.checkpoints import StoreCheckpoints
from synthtune.trainer.data import build_dataset
from synthtune.trainer.model import pick_method

PRODUCER = "synthtune.trainer"


def _watch(progress: Progress, file: Path, stop: threading.Event) -> None:
    """Forward the worker's step count to progress (the worker may be another process)."""
    last = -1
    while not stop.wait(1.0):
        try:
            state = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        if state["step"] != last:
            if last < 0:
                progress.start(state.get("max_steps") or None, progress.description or "training")
            progress.advance(state["step"] - max(last, 0))
            loss = state["logs"].get("loss")
            if loss is not None:
                progress.note(f"step {state['step']}: loss {loss:.4f}")
            last = state["step"]


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
    """Fine-tune the base model on one method's synthetic data into an `adapter` artifact."""
    if inputs.get("synthetic") is None:
        raise InvalidInput(f"train {method}: needs the synthetic artifact (run generate first)")
    synthetic = store.open(inputs["synthetic"])
    train = spec.train
    kind = pick_method(train)
    config = {"train": train.model_dump(), "resolved_method": kind}
    art_id = store.artifact_id("adapter", [synthetic.id], config)
    if (cached := store.find(art_id)) is not None:
        progress.note(f"reusing cached {art_id}")
        return cached
    model_path = resolve_model(train.base_model, spec.base_dir)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as exc:
        raise InvalidInput(f"train.base_model {train.base_model!r}: cannot load its tokenizer ({exc})") from None
    examples = list(synthetic.iter_jsonl("data.jsonl"))
    data = build_dataset(tokenizer, examples, train.max_seq_len, train.overlong, train.seed)
    work = Path(tempfile.mkdtemp(prefix=f"synthtune-train-{art_id}-"))
    try:
        data_file = work / "data.json"
        data_file.write_text(json.dumps({"train": data.train, "validation": data.validation}))
        job = {"train_spec": train.model_dump(), "method": kind, "model_path": model_path, "data_file": str(data_file),
               "output_dir": str(work), "store_uri": store.uri, "artifact_id": art_id}
        progress.start(train.max_steps, f"training {method} ({kind}) on {len(data.train)} examples")
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(progress, work / "progress.json", stop), daemon=True)
        watcher.start()
        try:
            if train.scaling.use_ray:
                from synthtune.trainer.raytrain import run_with_ray

                run_with_ray(job, train.scaling)
            else:
                from synthtune.trainer.loop import train_worker

                train_worker(job)
        except Exception as exc:
            raise _unwrap(exc) from None
        finally:
            stop.set()
            watcher.join(timeout=5)
        summary = json.loads((work / "summary.json").read_text())
        summary.update({"examples": len(data.train), "validation_examples": len(data.validation), "truncated": data.truncated,
                        "rejected": len(data.rejected), "base_model": train.base_model})
        with store.create("adapter", [synthetic.id], config, PRODUCER, art_id) as w:
            for path in sorted((work / "adapter").iterdir()):
                shutil.copyfile(path, w.path(path.name))
            if (work / "merged").is_dir():
                for path in sorted((work / "merged").iterdir()):
                    shutil.copyfile(path, w.path(f"merged/{path.name}"))
            w.write_json("training_log.json", summary)
            w.write_jsonl("rejects.jsonl", data.rejected)
            plot_losses(summary, w.path("loss_curve.png"))
            w.stats.update({k: summary[k] for k in ("method", "steps", "runtime_s", "tokens_per_s", "examples", "truncated", "rejected")})
            ref = w.commit()
        StoreCheckpoints(store, art_id).clear()
        progress.note(f"trained {method}: {summary['steps']} steps, final loss {summary['train_loss'][-1]:.4f}" if summary["train_loss"] else f"trained {method}")
        return ref
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
