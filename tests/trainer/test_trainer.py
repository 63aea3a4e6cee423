"""Training: assistant-only labels, bad input, evaluation loss, early stopping, full fine-tuning, LoRA/QLoRA
through Ray on CPU, resume from S3 checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from trainer_helpers import OVERFIT, generator_row

from store_view import artifact_ids
from synthtune.errors import InvalidInput, StageSkipped
from synthtune.progress import Progress
from synthtune.spec import load_spec_text
from synthtune.tbevents import read_scalars
from synthtune.trainer.data import build_dataset, tokenize_chat, validation_size

REPO = Path(__file__).resolve().parents[2]


def _example(q: str, a: str, n: int = 1) -> dict:
    return generator_row(n, q, a)


def _spec(extra: str) -> object:
    return load_spec_text("version: 1\nname: t\nsource: {paths: [a.csv]}\n" + extra)


def _synthetic(store, rows=None) -> object:
    with store.create("synthetic", [], {"rows": rows or OVERFIT}, "test") as w:
        w.write_jsonl("data.jsonl", OVERFIT if rows is None else rows)
        return w.commit()


def test_loss_mask_covers_the_assistant_turn_only(tokenizer):
    ids, mask = tokenize_chat(tokenizer, _example("Why does the labeler wrinkle labels?", "Web tension is too low.")["messages"])
    answer = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert "Web tension is too low." in answer
    assert "labeler" not in answer and "maintenance engineer" not in answer


def test_tool_calls_are_trained_as_json(tokenizer):
    msgs = [{"role": "user", "content": "Capper jammed"}, {"role": "assistant", "content": "Stop it.", "tool_calls": [
        {"type": "function", "function": {"name": "issue_command", "arguments": json.dumps({"command": "STOP_CAPPER"})}}]}]
    ids, mask = tokenize_chat(tokenizer, msgs)
    assert "STOP_CAPPER" in tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])


def test_nothing_trainable_skips_the_stage_with_counts(tokenizer):
    with pytest.raises(StageSkipped, match="synthetic dataset is empty"):
        build_dataset(tokenizer, [], 128, "truncate", 1)
    no_answer = {**_example("hello?", "x", 1), "messages": [{"role": "user", "content": "hello?"}]}
    long = _example("q", "word " * 400, 2)
    with pytest.raises(StageSkipped, match=r"among the 3 synthetic examples \(2 no assistant turn, 1 longer than max_seq_len 64\)"):
        build_dataset(tokenizer, [no_answer, dict(no_answer, id="other"), long], 64, "reject", 1)


def test_overlong_examples_are_rejected_or_truncated_and_counted(tokenizer):
    long = _example("q", "word " * 400, 1)
    out = build_dataset(tokenizer, [long, _example("short q", "short answer", 2)], 64, "reject", 1)
    assert len(out.train) == 1 and out.rejected == [
        {"id": "record_qa-0001", "source_ids": ["rec-1"], "reason": "longer than max_seq_len 64", "detail": out.rejected[0]["detail"]}]
    assert out.rejected[0]["detail"].endswith(" tokens")
    out = build_dataset(tokenizer, [long], 64, "truncate", 1)
    assert out.truncated == 1 and len(out.train[0]["input_ids"]) == 64


def test_rejects_name_the_generator_record(tokenizer):
    """The generator writes ``id`` and ``provenance.source_ids`` (never ``provenance.key``): rejects must carry them."""
    bad = {**_example("q?", "a.", 7), "messages": [{"role": "user", "content": "q?"}]}
    out = build_dataset(tokenizer, [bad, _example("q2?", "a2.", 8)], 128, "truncate", 1)
    assert out.rejected == [{"id": "record_qa-0007", "source_ids": ["rec-7"], "reason": "no assistant turn"}]
    no_id = {k: v for k, v in bad.items() if k != "id"}
    out = build_dataset(tokenizer, [no_id, _example("q2?", "a2.", 8)], 128, "truncate", 1)
    assert out.rejected[0]["id"] == "rec-7"


def test_validation_holds_out_whole_source_groups(tokenizer):
    assert [validation_size(n, 0.1) for n in (0, 1, 2, 5, 10, 25)] == [0, 0, 1, 1, 1, 2]
    assert len(build_dataset(tokenizer, [_example("q", "a", 1)], 128, "truncate", 1).validation) == 0
    out = build_dataset(tokenizer, OVERFIT[:2], 128, "truncate", 1)
    assert len(out.validation) == 1 and len(out.train) == 1
    # Three paraphrases of one record and one of another: the held-out example never shares a source with training.
    rows = [generator_row(i, f"Question {i} about the capper?", f"Answer {i}.", sources=["rec-A"]) for i in range(3)]
    rows.append(generator_row(9, "Question about the filler?", "Answer B.", sources=["rec-B"]))
    for seed in range(5):
        out = build_dataset(tokenizer, rows, 128, "truncate", seed)
        assert len(out.validation) == 1 and len(out.train) == 3
        val_text = tokenizer.decode(out.validation[0]["input_ids"])
        assert "filler" in val_text  # rec-B is the only group that fits


def test_missing_target_modules_are_listed():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.model import lora_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100))
    with pytest.raises(InvalidInput, match=r"no module\(s\) wq; it has: .*q_proj"):
        lora_config(model, TrainSpec.model_validate({"lora": {"target_modules": ["wq"]}}))


def test_missing_base_model_path_is_not_found(file_store, tmp_path):
    from synthtune.errors import NotFound
    from synthtune.trainer import run

    ref = _synthetic(file_store, [_example("q?", "a.")])
    spec = load_spec_text(f"version: 1\nname: t\nsource: {{paths: [a.csv]}}\ntrain: {{base_model: {tmp_path / 'nope'}}}\n")
    with pytest.raises(NotFound):
        run(spec, {"synthetic": ref}, file_store, Progress("train"), method="record_qa")
    assert artifact_ids(file_store, "adapter") == []


def test_empty_synthetic_data_skips_the_stage_and_writes_nothing(file_store, tiny_model):
    from synthtune.trainer import run

    ref = _synthetic(file_store, [])
    spec = _spec(f"train: {{base_model: {tiny_model}, method: lora, max_steps: 2, scaling: {{use_ray: false}}}}\n")
    with pytest.raises(StageSkipped, match="train record_qa: the synthetic dataset is empty"):
        run(spec, {"synthetic": ref}, file_store, Progress("train"), method="record_qa")
    assert artifact_ids(file_store, "adapter") == []


def test_folder_without_safetensors_is_refused(tmp_path, tiny_model, file_store):
    import shutil

    import torch
    from safetensors.torch import load_file

    from synthtune.trainer import run

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    spec = _spec(f"train: {{base_model: {folder}, method: lora, max_steps: 2, scaling: {{use_ray: false}}}}\n")
    with pytest.raises(InvalidInput, match=r"no \.safetensors weights in the folder \(found pytorch_model\.bin\); synthtune loads safetensors only"):
        run(spec, {"synthetic": _synthetic(file_store)}, file_store, Progress("train"), method="record_qa")
    assert artifact_ids(file_store, "adapter") == []


def test_remote_code_is_not_run_unless_the_spec_allows_it(tmp_path, tiny_model):
    """A model folder that ships code (auto_map) is refused with trust_remote_code off, and its code never runs."""
    import shutil

    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.model import load_model

    folder = tmp_path / "custom"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil_llama", auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                                                      "AutoModelForCausalLM": "modeling_evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    sentinel = tmp_path / "code-ran"
    for name in ("configuration_evil.py", "modeling_evil.py"):
        (folder / name).write_text(f"open({str(sentinel)!r}, 'w').write('ran')\n")
    spec = TrainSpec.model_validate({})
    assert spec.trust_remote_code is False
    with pytest.raises(InvalidInput, match=r"ships its own code.*trust_remote_code is true"):
        load_model(str(folder), spec, "lora")
    assert not sentinel.exists()


def test_parameter_count_unpacks_4bit_weights():
    """bitsandbytes packs two 4-bit weights per byte: MFU must count the weights, not the bytes."""
    from types import SimpleNamespace

    import torch

    from synthtune.trainer.model import count_parameters

    layer = torch.nn.Linear(8, 4, bias=False)
    packed = torch.nn.Parameter(torch.zeros(16, 1, dtype=torch.uint8), requires_grad=False)
    packed.quant_state = SimpleNamespace(shape=torch.Size([4, 8]))
    model = torch.nn.Module()
    model.quantised = torch.nn.Module()
    model.quantised.register_parameter("weight", packed)
    model.plain = layer
    assert count_parameters(model) == 32 + 32


def test_eval_interval_gives_short_runs_a_curve():
    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.sizing import eval_interval, planned_steps

    assert eval_interval(50, 5) == 1 and eval_interval(50, 30) == 7 and eval_interval(50, 1000) == 50 and eval_interval(3, 1000) == 3
    assert planned_steps(TrainSpec.model_validate({"max_steps": 12}), 100, 4, 1, 1) == 12
    # 7 epochs of 10 examples, micro batch 2, accumulation 2, one worker: 5 batches -> 3 steps an epoch.
    assert planned_steps(TrainSpec.model_validate({"epochs": 7}), 10, 2, 2, 1) == 21


def test_cpu_micro_batch_keeps_the_logits_of_one_pass_in_budget():
    """The thesis's batch of 18 at 1,024 tokens in one CPU pass took 20 GB (SmolLM2's 49k vocabulary) and was killed."""
    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.sizing import CPU_LOGITS_BUDGET, micro_batch

    spec = TrainSpec(batch_size=18, max_seq_len=1024)
    micro = micro_batch(spec, longest=1024, vocab=49152, world=1, on_gpu=False)
    assert 1 <= micro < 18 and micro * 1024 * 49152 * 12 <= CPU_LOGITS_BUDGET
    assert micro_batch(spec, longest=1024, vocab=49152, world=1, on_gpu=True) == 18  # a GPU takes the batch whole
    assert micro_batch(spec, longest=64, vocab=49152, world=2, on_gpu=False) == 9  # short sequences: each worker's share
    assert micro_batch(TrainSpec(batch_size=18, micro_batch_size=5), longest=1024, vocab=49152, world=1, on_gpu=False) == 5


def test_full_fine_tuning_overfits_and_writes_a_whole_model_with_eval_loss(tmp_path, file_store, tiny_model):
    """A tiny random model, trained in process: loss falls, eval loss is there, the artifact is a loadable model."""
    import torch
    from transformers import AutoModelForCausalLM

    from synthtune.trainer import run

    spec = _spec(f"train: {{base_model: {tiny_model}, method: full, max_steps: 30, batch_size: 5, learning_rate: 0.01, warmup_steps: 0, "
                 "max_seq_len: 96, scaling: {use_ray: false}}\n")
    ref = run(spec, {"synthetic": _synthetic(file_store)}, file_store, Progress("train"), method="record_qa")
    art = file_store.open(ref)
    log = art.read_json("training_log.json")
    losses = log["train_loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    # 6 examples: one held out; eval every min(50, 30 // 4) = 7 steps and after the last one.
    assert log["validation_examples"] == 1 and log["examples"] == 5
    assert log["eval_steps"] == [7, 14, 21, 28, 30] and len(log["eval_loss"]) == 5 and log["eval_every"] == 7
    assert log["method"] == "full" and log["format"] == "full_model" and art.stats["format"] == "full_model"
    assert art.kind == "adapter"
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "training_log.json", "loss_curve.png"} <= set(art.files)
    assert "adapter_config.json" not in art.files and "adapter_model.safetensors" not in art.files
    assert log["gradient_checkpointing"] is False  # the default is GPU-only
    folder = art.download()
    tuned = AutoModelForCausalLM.from_pretrained(str(folder))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits, atol=1e-4)


def _rows(tokenizer, pairs):
    out = []
    for q, a in pairs:
        ids, mask = tokenize_chat(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
        out.append({"input_ids": ids, "completion_mask": mask})
    return out


def _worker_config(tmp_path, tiny_model, spec, data, **extra):
    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.config import TrainJob

    fields = {"spec": TrainSpec.model_validate(spec), "method": spec.get("method", "lora"), "model_path": str(tiny_model), "data": data,
              "store_uri": str(tmp_path / "store"), "artifact_id": "adapter-test", "output_dir": str(tmp_path / "work"), **extra}
    return TrainJob(**fields)


def test_early_stopping_stops_on_a_rising_eval_loss(tmp_path, tokenizer, tiny_model):
    """Train on one answer, evaluate on a contradicting one: the eval loss rises and training stops early."""
    from synthtune.trainer.loop import train_worker

    questions = [f"Status of line {i}?" for i in range(4)]
    train = _rows(tokenizer, [(q, "alpha bravo charlie delta echo foxtrot golf hotel") for q in questions])
    validation = _rows(tokenizer, [(q, "Zebra yodel xylophone walrus violin umbrella") for q in questions])
    spec = {"method": "lora", "max_steps": 40, "batch_size": 4, "learning_rate": 0.02, "warmup_steps": 0, "scheduler": "constant",
            "eval_steps": 2, "early_stopping_patience": 2, "checkpoint_steps": 1000, "lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}
    summary = train_worker(_worker_config(tmp_path, tiny_model, spec, {"train": train, "validation": validation}))
    assert summary is not None and summary["early_stopped"], summary["eval_loss"]
    assert summary["steps"] < 40 and summary["eval_every"] == 2
    evals = summary["eval_loss"]
    assert evals[-1] > min(evals) and len(evals) == summary["steps"] // 2
    assert summary["train_loss"][-1] < summary["train_loss"][0]


def test_tokens_per_s_after_a_resume_counts_this_run_only(tmp_path, tokenizer, tiny_model):
    from synthtune.store import open_store
    from synthtune.trainer.checkpoints import StoreCheckpoints
    from synthtune.trainer.loop import train_worker

    data = {"train": _rows(tokenizer, [(f"Question {i}?", f"Answer number {i}.") for i in range(4)]), "validation": []}
    spec = {"method": "lora", "max_steps": 4, "batch_size": 2, "learning_rate": 0.001, "warmup_steps": 0, "checkpoint_steps": 4,
            "lora": {"target_modules": ["q_proj", "v_proj"]}}
    first = train_worker(_worker_config(tmp_path, tiny_model, spec, data))
    assert first is not None and first["tokens_this_run"] == first["tokens"] > 0
    assert StoreCheckpoints(open_store(str(tmp_path / "store")), "adapter-test").latest_step() == 4
    again = train_worker(_worker_config(tmp_path / "second", tiny_model, {**spec, "max_steps": 8}, data, resume_step=4,
                                        store_uri=str(tmp_path / "store")))
    assert again is not None and again["resumed_from_step"] == 4 and again["steps"] == 8 and again["steps_this_run"] == 4
    assert 0 < again["tokens_this_run"] < again["tokens"]
    assert again["tokens"] == first["tokens"] + again["tokens_this_run"]
    assert again["tokens_per_s"] == pytest.approx(again["tokens_this_run"] / again["runtime_s"], rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_real_smollm2_trains_through_ray_and_adapter_changes_output(method, file_store, smollm2_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthtune.trainer import run

    spec = _spec(f"train: {{method: {method}, max_steps: 3, batch_size: 3, learning_rate: 0.003, warmup_steps: 0, max_seq_len: 96, "
                 "quantization: {compute_dtype: float32}, scaling: {cpus_per_worker: 2}}\n")
    ref = run(spec, {"synthetic": _synthetic(file_store)}, file_store, Progress("train"), method="record_qa")
    art = file_store.open(ref)
    assert {"adapter_model.safetensors", "adapter_config.json", "training_log.json", "loss_curve.png", "README.md"} <= set(art.files)
    assert any(name.startswith("runs/events.out.tfevents.") for name in art.files)
    assert "library_name: peft" in art.read_text("README.md") and f"- {method}" in art.read_text("README.md")
    log = art.read_json("training_log.json")
    assert log["method"] == method and log["format"] == "peft_lora" and log["steps"] == 3 and len(log["train_loss"]) == 3
    assert log["tokens_per_s"] > 0 and log["eval_loss"] and log["eval_steps"][-1] == 3
    # SmolLM2-135M has 134.5M weights, 4-bit or not (LoRA adds about 1M).
    assert 134e6 < log["parameters"] < 140e6, log["parameters"]
    config = json.loads(art.read_text("adapter_config.json"))
    assert config["r"] == 16 and config["lora_alpha"] == 8 and set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    base = AutoModelForCausalLM.from_pretrained(smollm2_path)
    enc = tok.apply_chat_template(OVERFIT[0]["messages"][:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        before = base(**enc).logits[0, -1].clone()
        tuned = PeftModel.from_pretrained(base, str(art.download()))
        after = tuned(**enc).logits[0, -1]
    assert not torch.allclose(before, after, atol=1e-4)


KILLABLE = textwrap.dedent(
    """
    import sys, json
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from synthtune.progress import Progress
    from synthtune.spec import load_spec_text
    from synthtune.store import open_store
    from synthtune.trainer import run
    store = open_store(sys.argv[1])
    spec = load_spec_text(sys.argv[2])
    ref = store.find(sys.argv[3])
    out = run(spec, {"synthetic": ref}, store, Progress("train", [lambda e: print(e.message, flush=True) if e.message else None]), method="m")
    print("REF", out.id, flush=True)
    print("DONE", json.dumps(store.open(out).read_json("training_log.json")), flush=True)
    """
)


@pytest.mark.integration
@pytest.mark.slow
def test_killed_job_resumes_from_the_latest_s3_checkpoint(tmp_path, s3_store_uri, monkeypatch):
    from synthtune.store import open_store
    from tiny_models import save_tiny_llama

    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    model_dir = Path(save_tiny_llama(tmp_path / "tiny", hidden_size=64, num_key_value_heads=4))
    store = open_store(s3_store_uri)
    ref = _synthetic(store)
    spec_text = ("version: 1\nname: t\nsource: {paths: [a.csv]}\ngenerate: {methods: [{name: record_qa, label: m}]}\n"
                 f"train: {{base_model: {model_dir}, method: lora, max_steps: 40, batch_size: 2, checkpoint_steps: 5, learning_rate: 0.001, "
                 "warmup_steps: 0, max_seq_len: 96, lora: {target_modules: [q_proj, v_proj]}, scaling: {use_ray: false}}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "services"))
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, s3_store_uri, spec_text, ref.id], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.time() + 300
    seen_step = 0
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("step "):
            seen_step = int(line.split()[1].rstrip(":"))
            if seen_step >= 12:  # checkpoints at 5 and 10 are in the store
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert seen_step >= 12
    out = subprocess.run([sys.executable, "-c", KILLABLE, s3_store_uri, spec_text, ref.id], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    log = json.loads(out.stdout.split("DONE ", 1)[1])
    resumed = log["resumed_from_step"]
    # The latest complete checkpoint at the kill: one of every 5 steps, at least the one at 10.
    assert resumed is not None and resumed >= 10 and resumed % 5 == 0 and log["steps"] == 40
    assert log["train_steps"] == list(range(1, 41))  # the restored history plus the rest, each step once
    events = read_scalars(store.open(out.stdout.split("REF ", 1)[1].split()[0]).download() / "runs")
    assert [s for s, _ in events["train/loss"]] == list(range(1, 41))  # so do the TensorBoard events
    resumed_steps = [int(line.split()[1].rstrip(":")) for line in out.stdout.splitlines() if line.startswith("step ")]
    assert resumed_steps and min(resumed_steps) > resumed  # the resumed process never ran a step before its checkpoint
    # Its speed counts the tokens it trained itself, not those restored with the checkpoint.
    assert 0 < log["tokens_this_run"] < log["tokens"] and log["steps_this_run"] == 40 - resumed
    assert log["tokens_per_s"] == pytest.approx(log["tokens_this_run"] / log["runtime_s"], rel=0.01)


def test_gradient_checkpointing_set_explicitly_runs_on_cpu_and_still_trains_lora(file_store, tiny_model):
    """On CPU it is off by default; set in the spec it is on, and gradients still reach the LoRA weights."""
    from safetensors.torch import load_file

    from synthtune.trainer import run

    spec = _spec(f"train: {{base_model: {tiny_model}, method: lora, max_steps: 2, batch_size: 2, learning_rate: 0.01, warmup_steps: 0, "
                 "max_seq_len: 96, gradient_checkpointing: true, lora: {target_modules: [q_proj, v_proj]}, scaling: {use_ray: false}}\n")
    art = file_store.open(run(spec, {"synthetic": _synthetic(file_store)}, file_store, Progress("train"), method="record_qa"))
    assert art.read_json("training_log.json")["gradient_checkpointing"] is True
    weights = load_file(str(art.local_path("adapter_model.safetensors")))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero means it was trained
