"""Answers from the base model and every adapter: transformers + PEFT on CPU, vLLM LoRA on GPU, or an endpoint."""

from __future__ import annotations

import json
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.progress import Progress
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Artifact


def check_adapter_base(adapter: Artifact, base_model: str) -> None:
    """An adapter trained on another base model is refused, naming both."""
    log = adapter.read_json("training_log.json") if "training_log.json" in adapter.files else {}
    trained_on = log.get("base_model")
    if trained_on and trained_on != base_model:
        raise InvalidInput(f"adapter {adapter.id} was trained on {trained_on!r}, but evaluate uses base model {base_model!r}")


def generate_transformers(spec: PipelineSpec, model_path: str, adapters: dict[str, Artifact], prompts: list[list[dict[str, Any]]],
                          temperature: float, samples: int, progress: Progress) -> dict[str, list[list[tuple[str, str]]]]:
    """{model name: per prompt, per sample (text, finish_reason)}; the base model is loaded once."""
    from synthtune.llm.hf_backend import generate_batch, load_causal_lm

    tokenizer, base = load_causal_lm(model_path)
    ev = spec.evaluate
    names = ["base", *[f"tuned:{k}" for k in adapters]]
    out: dict[str, list[list[tuple[str, str]]]] = {n: [[] for _ in prompts] for n in names}
    model: Any = base
    if adapters:
        from peft import PeftModel

        first = next(iter(adapters))
        model = PeftModel.from_pretrained(base, str(adapters[first].download()), adapter_name=first)
        for key, art in list(adapters.items())[1:]:
            model.load_adapter(str(art.download()), adapter_name=key)
        model.eval()
    for name in names:
        for s in range(samples):
            seed = spec.evaluate.seed + s
            for start in range(0, len(prompts), ev.batch_size):
                progress.check_cancelled()
                batch = prompts[start : start + ev.batch_size]
                if name == "base" and adapters:
                    with model.disable_adapter():
                        results = generate_batch(tokenizer, model, batch, temperature, ev.max_new_tokens, 1.0, seed)
                else:
                    if adapters:
                        model.set_adapter(name.split(":", 1)[1])
                    results = generate_batch(tokenizer, model, batch, temperature, ev.max_new_tokens, 1.0, seed)
                for i, (text, _p, _c, finish) in enumerate(results):
                    out[name][start + i].append((text, finish))
                progress.advance(len(batch))
    if adapters:
        model.unload()  # leave the cached base model clean for the next user in this process
    return out


def generate_openai(spec: PipelineSpec, adapters: dict[str, Artifact], prompts: list[list[dict[str, Any]]], temperature: float,
                    samples: int, progress: Progress) -> dict[str, list[list[tuple[str, str]]]]:
    """An endpoint serving the base model under its name and each adapter under its method key."""
    from synthtune.llm.chat import ChatRequest
    from synthtune.llm.openai_backend import OpenAIBackend
    from synthtune.spec.generate import ModelEndpointSpec

    ev = spec.evaluate
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for name in ["base", *[f"tuned:{k}" for k in adapters]]:
        served = spec.train.base_model if name == "base" else name.split(":", 1)[1]
        backend = OpenAIBackend(ModelEndpointSpec(backend="openai", model=served, base_url=ev.base_url, temperature=temperature,
                                                  max_tokens=ev.max_new_tokens, api_key_env=ev.judge.api_key_env))
        out[name] = [[] for _ in prompts]
        for s in range(samples):
            results = backend.complete([ChatRequest(messages=p, seed=ev.seed + s) for p in prompts], progress)
            for i, r in enumerate(results):
                out[name][i].append((r.text, r.finish_reason))
    return out


def generate_vllm(spec: PipelineSpec, adapters: dict[str, Artifact], prompts: list[list[dict[str, Any]]], temperature: float,
                  samples: int, progress: Progress) -> dict[str, list[list[tuple[str, str]]]]:
    """vLLM with one LoRARequest per adapter (GPU)."""
    from synthtune.llm.chat import ChatRequest
    from synthtune.llm.vllm_backend import VLLMBackend, import_vllm
    from synthtune.spec.generate import ModelEndpointSpec

    vllm_lora = import_vllm().lora.request.LoRARequest
    ev = spec.evaluate
    backend = VLLMBackend(ModelEndpointSpec(backend="vllm", model=spec.train.base_model, temperature=temperature,
                                            max_tokens=ev.max_new_tokens, seed=ev.seed), spec.base_dir, enable_lora=bool(adapters))
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for i, name in enumerate(["base", *[f"tuned:{k}" for k in adapters]]):
        lora = None if name == "base" else vllm_lora(name, i, str(adapters[name.split(":", 1)[1]].download()))
        out[name] = [[] for _ in prompts]
        for s in range(samples):
            for j, r in enumerate(backend.complete([ChatRequest(messages=p, seed=ev.seed + s) for p in prompts], progress, lora=lora)):
                out[name][j].append((r.text, r.finish_reason))
    return out


def expected_call(record: dict[str, Any]) -> dict[str, Any] | None:
    """The logged command of an event-log episode, as the function call a model should make."""
    commands = [e.get("command") for e in record.get("events") or [] if e.get("command")]
    if not commands:
        return None
    return {"name": "issue_command", "arguments": json.loads(json.dumps({"command": commands[0]}))}
