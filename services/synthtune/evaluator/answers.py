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
    """{model name: per prompt, per sample (text, finish_reason)}; the base model is loaded once, adapters switched by PEFT."""
    from synthtune.llm.chat import ChatRequest
    from synthtune.llm.transformers_backend import TransformersBackend
    from synthtune.spec.generate import ModelEndpointSpec

    ev = spec.evaluate
    backend = TransformersBackend(ModelEndpointSpec(backend="transformers", model=model_path, temperature=temperature,
                                                    max_tokens=ev.max_new_tokens, concurrency=ev.batch_size, seed=ev.seed))
    names = ["base", *[f"tuned:{k}" for k in adapters]]
    out: dict[str, list[list[tuple[str, str]]]] = {n: [[] for _ in prompts] for n in names}
    peft_model: Any = None
    if adapters:
        from peft import PeftModel

        first = next(iter(adapters))
        peft_model = PeftModel.from_pretrained(backend.lm, str(adapters[first].download()), adapter_name=first)
        for key, art in list(adapters.items())[1:]:
            peft_model.load_adapter(str(art.download()), adapter_name=key)
        backend.lm = peft_model.eval()
    try:
        for name in names:
            for s in range(samples):
                progress.check_cancelled()
                requests = [ChatRequest(messages=p, seed=ev.seed + s) for p in prompts]
                if peft_model is not None and name == "base":
                    with peft_model.disable_adapter():
                        results = backend.complete(requests, progress)
                else:
                    if peft_model is not None:
                        peft_model.set_adapter(name.split(":", 1)[1])
                    results = backend.complete(requests, progress)
                for i, r in enumerate(results):
                    out[name][i].append((r.text, r.finish_reason))
    finally:
        backend.close()
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
    """vLLM's offline engine with one LoRARequest per adapter (GPU only)."""
    from synthtune.llm.models import resolve_model
    from synthtune.llm.vllm_backend import import_vllm

    vllm = import_vllm()
    ev = spec.evaluate
    llm = vllm.LLM(model=resolve_model(spec.train.base_model, spec.base_dir), enable_lora=bool(adapters), seed=ev.seed,
                   max_lora_rank=max([spec.train.lora.r, 16]))
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for i, name in enumerate(["base", *[f"tuned:{k}" for k in adapters]]):
        lora = None if name == "base" else vllm.lora.request.LoRARequest(name, i, str(adapters[name.split(":", 1)[1]].download()))
        out[name] = [[] for _ in prompts]
        for s in range(samples):
            params = vllm.SamplingParams(temperature=temperature, max_tokens=ev.max_new_tokens, seed=ev.seed + s)
            for j, result in enumerate(llm.chat(prompts, params, lora_request=lora, use_tqdm=False)):
                comp = result.outputs[0]
                out[name][j].append((comp.text.strip(), comp.finish_reason or "stop"))
            progress.advance(len(prompts))
    return out


def expected_call(record: dict[str, Any]) -> dict[str, Any] | None:
    """The logged command of an event-log episode, as the function call a model should make."""
    commands = [e.get("command") for e in record.get("events") or [] if e.get("command")]
    if not commands:
        return None
    return {"name": "issue_command", "arguments": json.loads(json.dumps({"command": commands[0]}))}
