"""Training: assistant-only labels, bad input, LoRA/QLoRA through Ray on CPU, resume from S3 checkpoints."""

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

from synthtune.errors import InvalidInput
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.spec import load_spec_text
from synthtune.trainer.data import build_dataset, tokenize_chat

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))


def _example(q: str, a: str) -> dict:
    return {"messages": [{"role": "system", "content": "You are a maintenance engineer."}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}], "provenance": {"key": q[:8]}}


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


def test_bad_input_is_clear(tokenizer):
    with pytest.raises(InvalidInput, match="synthetic dataset is empty"):
        build_dataset(tokenizer, [], 128, "truncate", 1)
    no_answer = {"messages": [{"role": "user", "content": "hello?"}]}
    with pytest.raises(InvalidInput, match="no assistant turn"):
        build_dataset(tokenizer, [no_answer], 128, "truncate", 1)
    long = _example("q", "word " * 400)
    out = build_dataset(tokenizer, [long, _example("short q", "short answer")], 64, "reject", 1)
    assert len(out.train) == 1 and "> max_seq_len 64" in out.rejected[0]["reason"]
    out = build_dataset(tokenizer, [long], 64, "truncate", 1)
    assert out.truncated == 1 and len(out.train[0]["input_ids"]) == 64


def test_missing_target_modules_are_listed():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.model import add_lora

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100))
    with pytest.raises(InvalidInput, match=r"no module\(s\) wq; it has: .*q_proj"):
        add_lora(model, TrainSpec.model_validate({"lora": {"target_modules": ["wq"]}}))


def test_missing_base_model_path_is_not_found(file_store, tmp_path):
    from synthtune.errors import NotFound
    from synthtune.trainer import run

    with file_store.create("synthetic", [], {"x": 1}, "test") as w:
        w.write_jsonl("data.jsonl", [_example("q?", "a.")])
        ref = w.commit()
    spec = load_spec_text(f"version: 1\nname: t\nsource: {{paths: [a.csv]}}\ntrain: {{base_model: {tmp_path / 'nope'}}}\n")
    with pytest.raises(NotFound):
        run(spec, {"synthetic": ref}, file_store, Progress("train"), method="record_qa")
    assert list(file_store.list_artifacts("adapter")) == []


OVERFIT = [_example(f"What does fault code F0{i} on the capper mean?", f"F0{i} means the chuck clutch on head {i} slips; replace the clutch plates.")
           for i in range(1, 7)]


def _spec(extra: str) -> object:
    return load_spec_text("version: 1\nname: t\nsource: {paths: [a.csv]}\n" + extra)


def _synthetic(store) -> object:
    with store.create("synthetic", [], {"overfit": 1}, "test") as w:
        w.write_jsonl("data.jsonl", OVERFIT)
        return w.commit()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_real_smollm2_trains_through_ray_and_adapter_changes_output(method, file_store):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthtune.trainer import run

    spec = _spec(f"train: {{method: {method}, max_steps: 3, batch_size: 3, learning_rate: 0.003, warmup_steps: 0, max_seq_len: 96, "
                 "quantization: {compute_dtype: float32}, scaling: {cpus_per_worker: 2}}\n")
    ref = run(spec, {"synthetic": _synthetic(file_store)}, file_store, Progress("train"), method="record_qa")
    art = file_store.open(ref)
    assert {"adapter_model.safetensors", "adapter_config.json", "training_log.json", "loss_curve.png"} <= set(art.files)
    log = art.read_json("training_log.json")
    assert log["method"] == method and log["steps"] == 3 and len(log["train_loss"]) == 3 and log["tokens_per_s"] > 0
    if method == "qlora":
        return
    config = json.loads(art.read_text("adapter_config.json"))
    assert config["r"] == 16 and config["lora_alpha"] == 8 and set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "lm_head"}
    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path)
    enc = tok.apply_chat_template(OVERFIT[0]["messages"][:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        before = base(**enc).logits[0, -1].clone()
        tuned = PeftModel.from_pretrained(base, str(art.download()))
        after = tuned(**enc).logits[0, -1]
    assert not torch.allclose(before, after, atol=1e-4)


def test_loss_falls_on_a_tiny_overfit_set(tmp_path, file_store):
    """A tiny random model from a config, trained in process: fast and deterministic."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synthtune.trainer import run

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    model_dir = tmp_path / "tiny"
    LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 vocab_size=len(tok), tie_word_embeddings=True)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    spec = _spec(f"train: {{base_model: {model_dir}, method: full, max_steps: 30, batch_size: 6, learning_rate: 0.01, warmup_steps: 0, "
                 "max_seq_len: 96, scaling: {use_ray: false}}\n")
    ref = run(spec, {"synthetic": _synthetic(file_store)}, file_store, Progress("train"), method="record_qa")
    losses = file_store.open(ref).read_json("training_log.json")["train_loss"]
    assert losses[-1] < 0.5 * losses[0], losses


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
    print("DONE", json.dumps(store.open(out).read_json("training_log.json")), flush=True)
    """
)


@pytest.mark.integration
@pytest.mark.slow
def test_killed_job_resumes_from_the_latest_s3_checkpoint(tmp_path, s3_store_uri, monkeypatch):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synthtune.store import open_store

    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    model_dir = tmp_path / "tiny"
    LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 vocab_size=len(tok))).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
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
    resumed_steps = [int(line.split()[1].rstrip(":")) for line in out.stdout.splitlines() if line.startswith("step ")]
    assert resumed_steps and min(resumed_steps) > resumed  # the resumed process never ran a step before its checkpoint
