"""export-model: PEFT, merged and GGUF exports of a tuned SmolLM2; the GGUF round-trips through transformers (gguf_file=)."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest

from synthtune.errors import InvalidInput

SYSTEM = "You are an experienced maintenance engineer."


def _artifact(store, folder: Path, kind: str = "adapter"):  # type: ignore[no-untyped-def]
    with store.create(kind, [], {"fixture": uuid.uuid4().hex}, producer="tests") as w:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                w.path(path.name).write_bytes(path.read_bytes())
        w.write_json("training_log.json", {"base_model": "smollm2-135m-instruct", "train_loss": [1.0]})
        return store.open(w.commit())


def _report(shared_datasets: Path) -> dict:  # type: ignore[type-arg]
    """A report whose first prompts are real excavator work orders (the export checks the GGUF on them)."""
    with open(shared_datasets / "excavator_work_orders_labelled.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["Action"]][:3]
    examples = [{"id": r["id"], "question": f"On the {r['Asset']}: {r['OriginalShorttext']}. What is the likely cause and how do I fix it?",
                 "reference": f"Fix: {r['Action']}.", "answers": {}} for r in rows]
    return {"examples": examples, "verdict": "direct won: ROUGE-L 0.350 vs base 0.070.",
            "metrics": {"base": {"rougeL": 0.07}, "tuned:direct": {"rougeL": 0.35}},
            "gate": {"passed": True, "reason": "gain +0.28"}}


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory, smollm2_path):  # type: ignore[no-untyped-def]
    """A LoRA adapter on SmolLM2 with random (non-zero) weights, so the merged model differs from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"], init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(1200)  # merge, two GGUF files, three model loads and greedy answers on CPU
def test_gguf_export_round_trips_with_the_merged_models_greedy_answers(file_store, lora_folder, smollm2_path, shared_datasets, tmp_path):
    from synthtune.trainer.export_model import export_model, greedy_answers, merge

    art = _artifact(file_store, lora_folder)
    out = tmp_path / "gguf"
    files = export_model(art, smollm2_path, "gguf", out, run_id="r1", method="direct", base_model="smollm2-135m-instruct",
                         report=_report(shared_datasets), system=SYSTEM, max_new_tokens=16)
    assert {f.name for f in files} == {"direct-f16.gguf", "direct-q8_0.gguf", "Modelfile", "gguf_check.json", "README.md"}
    check = json.loads((out / "gguf_check.json").read_text())
    assert check["prompts"] == 3 and check["agree"] == 3 and all(check["f16"])  # same greedy answers as the merged model
    # the adapter really changed the model: the base model answers otherwise
    prompts = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": e["question"]}] for e in _report(shared_datasets)["examples"]]
    assert greedy_answers(Path(smollm2_path), prompts, 16) != check["merged"]
    assert (out / "direct-q8_0.gguf").stat().st_size < 0.6 * (out / "direct-f16.gguf").stat().st_size
    card = (out / "README.md").read_text()
    assert "direct won: ROUGE-L 0.350" in card and "| tuned:direct | 0.3500 |" in card and "ollama create" in card
    assert (out / "Modelfile").read_text().startswith("FROM ./direct-q8_0.gguf")
    merged = merge(art, smollm2_path, tmp_path / "merged")
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    # lm_head was adapted but SmolLM2 ties it to the input embeddings: the merge unties them, so the
    # inputs stay as the evaluated (unmerged) model saw them, and lm_head carries the change.
    from safetensors.torch import load_file

    weights, base = load_file(str(merged / "model.safetensors")), load_file(str(Path(smollm2_path) / "model.safetensors"))
    embeddings = base.get("model.embed_tokens.weight", base.get("lm_head.weight"))  # the base file stores the tied matrix once
    assert (weights["model.embed_tokens.weight"] == embeddings).all() and not (weights["lm_head.weight"] == embeddings).all()


def test_peft_export_copies_the_adapter_with_a_card(file_store, lora_folder, tmp_path, shared_datasets):
    from synthtune.trainer.export_model import export_model

    files = export_model(_artifact(file_store, lora_folder), "unused", "peft", tmp_path / "peft", run_id="r1", method="direct",
                         base_model="smollm2-135m-instruct", report=_report(shared_datasets), system=SYSTEM)
    assert {f.name for f in files} == {"adapter_model.safetensors", "adapter_config.json", "training_log.json", "README.md"}
    assert "Promotion gate: passed" in (tmp_path / "peft" / "README.md").read_text()


def test_an_architecture_the_gguf_writer_does_not_know_is_bad_input_naming_it(file_store, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from synthtune.trainer.export_model import export_model

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32)).save_pretrained(folder)
    with pytest.raises(InvalidInput, match="does not know the architecture GPT2LMHeadModel.*known: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"):
        export_model(_artifact(file_store, folder), "unused", "gguf", tmp_path / "out", run_id="r1", method="full",
                     base_model="gpt2", report=None, system=SYSTEM)
    assert not list((tmp_path / "out").glob("*.gguf"))
