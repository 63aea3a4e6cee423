"""What a trained adapter carries beside its weights (TensorBoard events, a model card), MLflow tracking, and the
bad-input rules: loss masking without generation markers, settings under which the model cannot change."""

from __future__ import annotations

import socket

import pytest
import yaml
from trainer_helpers import OVERFIT

from synthtune.errors import InvalidInput
from synthtune.progress import Progress
from synthtune.spec import load_spec_text
from synthtune.tbevents import artifact_curves, read_scalars

# SmolLM2's ChatML template with the assistant's content and end-of-turn token inside {% generation %} markers.
MARKED_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _lineage(store):
    """A prepared artifact and the synthetic one made from it, as generate leaves them."""
    with store.create("prepared", [], {"n": 1}, "test") as w:
        w.write_jsonl("train.jsonl", [])
        prepared = w.commit()
    with store.create("synthetic", [prepared.id], {"rows": len(OVERFIT)}, "test") as w:
        w.write_jsonl("data.jsonl", OVERFIT)
        return prepared, w.commit()


def _spec(model, extra: str = "", warmup: int = 0):
    return load_spec_text("version: 1\nname: t\nsource: {paths: [a.csv]}\n"
                          f"train: {{base_model: {model}, method: lora, max_steps: 4, batch_size: 2, learning_rate: 0.01, warmup_steps: {warmup}, "
                          f"max_seq_len: 96, scaling: {{use_ray: false}}{extra}}}\n")


def _notes() -> tuple[Progress, list[str]]:
    notes: list[str] = []
    return Progress("train", [lambda e: notes.append(e.message) if e.message else None]), notes


def test_adapter_holds_tensorboard_events_a_model_card_and_mlflow_gets_the_run(file_store, tiny_model, tmp_path, monkeypatch):
    """One LoRA run with MLflow on a local file store: events per step in runs/, a model card, the MLflow run."""
    from mlflow.tracking import MlflowClient

    from synthtune.trainer import run

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    mlruns = f"file://{tmp_path / 'mlruns'}"
    prepared, synthetic = _lineage(file_store)
    progress, notes = _notes()
    spec = _spec(tiny_model, f", tracking: {{mlflow: {{tracking_uri: '{mlruns}', experiment: plant-a}}}}")
    ref = run(spec, {"synthetic": synthetic}, file_store, progress, method="record_qa")
    art = file_store.open(ref)
    curves = read_scalars(art.download() / "runs")
    assert artifact_curves(file_store.open(ref)) == curves  # what the report reads, fetching runs/ alone
    assert [s for s, _ in curves["train/loss"]] == [1, 2, 3, 4]
    assert [v for _, v in curves["train/loss"]] == pytest.approx(art.read_json("training_log.json")["train_loss"], rel=1e-5)
    assert {"train/learning_rate", "train/grad_norm", "train/tokens_per_s", "eval/loss"} <= set(curves)
    assert curves["eval/loss"][-1][0] == 4 and all(v > 0 for _, v in curves["train/tokens_per_s"])
    # The model card: Hub metadata up front, the lineage of the data it was trained on.
    card = art.read_text("README.md")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == str(tiny_model) and front["library_name"] == "peft"
    assert {"synthtune", "lora", "generation-method:record_qa"} <= set(front["tags"])
    assert front["synthtune"] == {"generation_method": "record_qa", "prepared": prepared.id, "synthetic": synthetic.id, "adapter": ref.id}
    assert "r=16, alpha=8, dropout=0.1 on q_proj, k_proj, v_proj, o_proj" in card and "report.html" in card
    # SmolLM2's template has no generation markers: the fallback is said, not silent.
    assert any("no {% generation %} markers" in n and "prompt/completion" in n for n in notes)
    # MLflow received the run: params, the loss per step, and where the adapter is.
    client = MlflowClient(tracking_uri=mlruns)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("plant-a").experiment_id])
    assert mlrun.data.params["learning_rate"] == "0.01" and mlrun.data.params["lora.r"] == "16"
    assert mlrun.data.tags["synthtune.adapter_uri"] == ref.uri and mlrun.data.tags["synthtune.synthetic"] == synthetic.id
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "train_loss")] == [1, 2, 3, 4]
    assert any(f"MLflow run {mlrun.info.run_id}" in n for n in notes)


def test_mlflow_down_and_a_warm_up_longer_than_the_run_warn_and_training_goes_on(file_store, tiny_model):
    """The thesis's 300 warm-up steps in a 4-step run: warned before training; an MLflow server that is not there: warned after."""
    from synthtune.trainer import run

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, synthetic = _lineage(file_store)
    progress, notes = _notes()
    spec = _spec(tiny_model, f", tracking: {{mlflow: {{tracking_uri: 'http://127.0.0.1:{port}'}}}}", warmup=300)
    ref = run(spec, {"synthetic": synthetic}, file_store, progress, method="record_qa")
    assert file_store.open(ref).read_json("training_log.json")["steps"] == 4
    futile = next(i for i, n in enumerate(notes) if "may not change" in n)
    assert "train.warmup_steps (300) >= the 4 training steps" in notes[futile] and "train.learning_rate 0.01" in notes[futile]
    assert futile < next(i for i, n in enumerate(notes) if n.startswith("step 1:"))
    assert any(f"MLflow at http://127.0.0.1:{port} did not take the run after 3 tries" in n for n in notes)


def test_a_template_with_generation_markers_gets_trl_assistant_masks_and_trains(tmp_path, tokenizer, tiny_model):
    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.config import TrainJob
    from synthtune.trainer.data import build_dataset
    from synthtune.trainer.loop import train_worker

    tokenizer = tokenizer.__class__.from_pretrained(str(tiny_model))
    tokenizer.chat_template = MARKED_TEMPLATE
    data = build_dataset(tokenizer, OVERFIT, 96, "truncate", 1)
    assert data.loss_mask == "assistant" and set(data.train[0]) == {"input_ids", "assistant_masks"}
    row = data.train[0]
    answer = tokenizer.decode([t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if m])
    assert answer.startswith("F0") and answer.endswith("<|im_end|>") and "capper" not in answer
    spec = TrainSpec.model_validate({"method": "lora", "max_steps": 2, "batch_size": 2, "warmup_steps": 0, "packing": True})
    summary = train_worker(TrainJob(spec=spec, method="lora", model_path=str(tiny_model), data={"train": data.train, "validation": []},
                                    store_uri=str(tmp_path / "store"), artifact_id="adapter-marked", loss_mask="assistant",
                                    output_dir=str(tmp_path / "work")))
    assert summary is not None and summary["steps"] == 2 and summary["loss_mask"] == "assistant" and summary["packing"] is True
    assert summary["tokens"] > 0 and summary["train_loss"][0] > 0


def test_lora_on_lm_head_is_refused_with_the_reason():
    with pytest.raises(InvalidInput, match=r"lm_head cannot carry a LoRA adapter: TRL's SFTTrainer computes the loss from lm_head.weight"):
        load_spec_text("version: 1\nname: t\nsource: {paths: [a.csv]}\ntrain: {lora: {target_modules: [q_proj, lm_head]}}\n")


def test_truncated_and_rejected_examples_are_counted_in_the_log(tiny_model):
    from trainer_helpers import generator_row

    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.stage import _tokenise

    rows = [generator_row(1, "Why?", "word " * 200), generator_row(2, "Short?", "Short answer."), {"id": "x", "messages": []}]
    for overlong, said in (("truncate", "train m: 1 of 3 examples truncated to max_seq_len 64 tokens"),
                           ("reject", "train m: 2 of 3 examples rejected (1 longer than max_seq_len 64, 1 no assistant turn)")):
        progress, notes = _notes()
        data = _tokenise(TrainSpec(base_model=str(tiny_model), max_seq_len=64, overlong=overlong), str(tiny_model), rows, "m", progress)
        assert said in "\n".join(notes), notes
        assert len(data.train) + len(data.validation) + len(data.rejected) == 3
