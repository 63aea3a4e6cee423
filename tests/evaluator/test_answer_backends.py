"""Answer generation through each backend: openai (loopback server), vllm (a fake module), transformers (tiny
random-weight models, a LoRA adapter and a full-model artifact as `method: full` writes it)."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
from eval_fixtures import (
    episode,
    make_adapter,
    make_prepared,
    pipeline,
    read_evaluation,
    save_tiny_model,
    ticket,
    user_text,
)
from loopback_server import LoopbackOpenAI

from synthtune.progress import Progress

TICKETS = [ticket(2, "Caps crooked", "Reset the chuck"), ticket(3, "Labels wrinkled", "Warm the glue")]
EPISODE = episode(4, [("capper.jam", 1, None), ("line.speed_bpm", 0, "STOP_CAPPER")])


def test_openai_backend_serves_base_and_adapters_by_name_with_the_teachers_key(file_store, monkeypatch):
    from synthtune.evaluator import run

    def responder(body):  # type: ignore[no-untyped-def]
        who = {"smollm2-135m-instruct": "base", "record_qa": "tuned"}[body["model"]]
        if body.get("tools"):
            name = "STOP_CAPPER" if who == "tuned" else "STOP_CONVEYOR"
            return {"content": "The capper jammed.", "tool_calls": [{"name": name, "arguments": {"target": "capper"}}]}
        return "Fix: Reset the chuck." if who == "tuned" and "Caps" in user_text(body["messages"]) else "Try restarting it."

    monkeypatch.setenv("EVAL_TEST_KEY", "sekret")
    monkeypatch.setenv("JUDGE_TEST_KEY", "the-judges-key")
    with LoopbackOpenAI(responder, api_key="sekret") as server:
        spec = pipeline(backend="openai", base_url=server.base_url, metrics=["rouge", "function_call"], forgetting_probe=False,
                        judge={"enabled": False, "backend": "openai", "api_key_env": "JUDGE_TEST_KEY"})
        spec.generate.teacher = spec.generate.teacher.model_copy(update={"backend": "openai", "base_url": server.base_url,
                                                                         "api_key_env": "EVAL_TEST_KEY"})
        inputs = {"prepared": make_prepared(file_store, [*TICKETS, EPISODE]),
                  "adapter:record_qa": make_adapter(file_store, "smollm2-135m-instruct")}
        metrics, preds = read_evaluation(file_store, run(spec, inputs, file_store, Progress()))
    assert {b["model"] for b in server.served} == {"smollm2-135m-instruct", "record_qa"}
    tooled = [b for b in server.served if b.get("tools")]
    assert len(tooled) == 2 and {t["function"]["name"] for t in tooled[0]["tools"]} == {"STOP_CAPPER"}
    assert all(b["temperature"] == 0 and b["max_tokens"] == spec.evaluate.max_new_tokens for b in server.served)
    tuned, base = metrics["models"]["tuned:record_qa"], metrics["models"]["base"]
    assert tuned["function_name_accuracy"] == 1.0 and tuned["function_args_accuracy"] == 1.0 and base["function_name_accuracy"] == 0.0
    assert tuned["rouge1"] > base["rouge1"]
    call_row = next(p for p in preds if p["model"] == "tuned:record_qa" and p["kind"] == "function_call")
    assert call_row["prediction"].startswith("The capper jammed.\n") and '"tool_calls"' in call_row["prediction"]


def test_openai_backend_never_sends_the_judges_key(file_store, monkeypatch):
    from synthtune.evaluator.answers import answer_api_key_env

    spec = pipeline(backend="openai", base_url="http://127.0.0.1:9/v1", judge={"api_key_env": "JUDGE_TEST_KEY"})
    assert answer_api_key_env(spec) is None  # a local server without a key gets the placeholder
    spec.generate.teacher = spec.generate.teacher.model_copy(update={"backend": "openai", "base_url": "https://api.example/v1",
                                                                     "api_key_env": "TEACHER_KEY"})
    assert answer_api_key_env(spec) is None  # the teacher's key belongs to another endpoint
    spec.generate.teacher = spec.generate.teacher.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})
    assert answer_api_key_env(spec) == "TEACHER_KEY"


def fake_vllm() -> types.ModuleType:
    """The API surface generate_vllm uses: LLM(...).chat(...), SamplingParams, lora.request.LoRARequest."""
    vllm = types.ModuleType("vllm")
    vllm.engines = []  # type: ignore[attr-defined]

    class LoRARequest:
        def __init__(self, name, lora_id, path):  # type: ignore[no-untyped-def]
            self.name, self.id, self.path = name, lora_id, path

    class LLM:
        def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
            self.kwargs, self.calls = kwargs, []
            vllm.engines.append(self)  # type: ignore[attr-defined]

        def chat(self, conversations, params, lora_request=None, use_tqdm=True, tools=None):  # type: ignore[no-untyped-def]
            self.calls.append({"n": len(conversations), "lora": lora_request, "tools": tools, "params": params.kwargs})
            who = lora_request.name if lora_request else self.kwargs["model"].rsplit("/", 1)[-1]
            out = []
            for _ in conversations:
                text = f"{who}: " + (json.dumps({"name": "STOP_CAPPER", "arguments": {}}) if tools else "Fix: reset the chuck.")
                out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text, finish_reason="stop")]))
            return out

    vllm.LLM = LLM  # type: ignore[attr-defined]
    vllm.SamplingParams = type("SamplingParams", (), {"__init__": lambda self, **kw: setattr(self, "kwargs", kw)})  # type: ignore[attr-defined]
    vllm.lora = types.SimpleNamespace(request=types.SimpleNamespace(LoRARequest=LoRARequest))  # type: ignore[attr-defined]
    return vllm


def test_vllm_backend_lora_requests_and_a_full_model_engine(file_store, monkeypatch, tmp_path):
    from synthtune.evaluator import run

    vllm = fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text("{}")
    lora_dir, full_dir = tmp_path / "lora", tmp_path / "full"
    lora_dir.mkdir()
    (lora_dir / "adapter_config.json").write_text(json.dumps({"r": 24}))
    (lora_dir / "adapter_model.safetensors").write_bytes(b"lora")
    full_dir.mkdir()
    (full_dir / "config.json").write_text("{}")
    (full_dir / "model.safetensors").write_bytes(b"weights")
    inputs = {"prepared": make_prepared(file_store, [*TICKETS, EPISODE]),
              "adapter:record_qa": make_adapter(file_store, str(base), lora_dir),
              "adapter:full_ft": make_adapter(file_store, str(base), full_dir, method="full")}
    spec = pipeline(base_model=str(base), backend="vllm", metrics=["rouge", "function_call"], forgetting_probe=False,
                    temperatures=[0.7], samples=2)
    metrics, preds = read_evaluation(file_store, run(spec, inputs, file_store, Progress()))
    first, second = vllm.engines
    assert first.kwargs["model"] == str(base) and first.kwargs["enable_lora"] and first.kwargs["max_lora_rank"] == 32
    assert [c["lora"].name if c["lora"] else None for c in first.calls] == [None] * 4 + ["record_qa"] * 4  # 2 samples x (tickets, episode)
    assert first.calls[4]["lora"].path == str(file_store.open(inputs["adapter:record_qa"]).download())
    assert [c["tools"] is not None for c in first.calls[:2]] == [False, True] and [c["n"] for c in first.calls[:2]] == [2, 1]
    assert [c["params"]["seed"] for c in first.calls[:4]] == [42, 42, 43, 43] and first.calls[0]["params"]["temperature"] == 0.7
    full_path = str(file_store.open(inputs["adapter:full_ft"]).download())
    assert second.kwargs["model"] == full_path and second.kwargs["tokenizer"] == str(base) and "enable_lora" not in second.kwargs
    assert all(c["lora"] is None for c in second.calls)
    answers = {p["model"]: p["prediction"] for p in preds if p["kind"] == "reference"}
    assert answers == {"base": "base-model: Fix: reset the chuck.", "tuned:record_qa": "record_qa: Fix: reset the chuck.",
                       "tuned:full_ft": f"{full_path.rsplit('/', 1)[-1]}: Fix: reset the chuck."}
    assert metrics["models"]["tuned:full_ft"]["function_name_accuracy"] == 1.0 and metrics["models"]["base"]["n"] == 4


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A tiny base, a random (non-zero) LoRA adapter on it, and another tiny model saved as `method: full` saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    base = save_tiny_model(root / "base", seed=0)
    torch.manual_seed(1)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                          LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(root / "lora")
    save_tiny_model(root / "full", seed=7)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (root / "full" / name).unlink(missing_ok=True)  # the trainer's full artifact: config.json + model.safetensors
    assert sorted(p.name for p in (root / "full").iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    return {"base": base, "lora": root / "lora", "full": root / "full"}


def test_transformers_loads_a_full_model_artifact_as_the_model_itself(file_store, tiny_models, tmp_path, one_torch_thread):
    from synthtune.evaluator import run
    from synthtune.llm.chat import ChatRequest
    from synthtune.llm.transformers_backend import TransformersBackend
    from synthtune.spec.generate import ModelEndpointSpec

    base = tiny_models["base"]
    inputs = {"prepared": make_prepared(file_store, TICKETS),
              "adapter:record_qa": make_adapter(file_store, base, tiny_models["lora"]),
              "adapter:full_ft": make_adapter(file_store, base, tiny_models["full"], method="full")}
    spec = pipeline(base_model=base, metrics=["rouge"], forgetting_probe=False, max_new_tokens=6, batch_size=2)
    metrics, preds = read_evaluation(file_store, run(spec, inputs, file_store, Progress()))
    got = {name: [p["prediction"] for p in preds if p["model"] == name] for name in ("base", "tuned:record_qa", "tuned:full_ft")}

    def direct(folder: str) -> list[str]:
        backend = TransformersBackend(ModelEndpointSpec(backend="transformers", model=folder, temperature=0, max_tokens=6, concurrency=2))
        sys_prompt = spec.generate.system_prompt
        from synthtune.records import question_for_record

        requests = [ChatRequest(messages=[{"role": "system", "content": sys_prompt}, {"role": "user", "content": question_for_record(t)}],
                                seed=42) for t in TICKETS]
        return [r.text for r in backend.complete(requests)]

    full_with_tokenizer = tmp_path / "full-with-tokenizer"
    shutil.copytree(tiny_models["full"], full_with_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (Path(base) / name).is_file():
            shutil.copy(Path(base) / name, full_with_tokenizer / name)
    assert got["base"] == direct(base)
    assert got["tuned:full_ft"] == direct(str(full_with_tokenizer)) != got["base"]  # the full model answered, not base + nothing
    assert got["tuned:record_qa"] != got["base"]  # the LoRA adapter was applied
    assert set(metrics["models"]) == {"base", "tuned:record_qa", "tuned:full_ft"}


def test_a_full_artifact_without_weights_is_a_clear_error(file_store, tmp_path):
    from synthtune.errors import InvalidInput
    from synthtune.evaluator.answers import split_adapters

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    art = file_store.open(make_adapter(file_store, "m", empty, method="full"))
    with pytest.raises(InvalidInput, match=r"method full but holds no model.*config.json, training_log.json"):
        split_adapters({"full_ft": art})

