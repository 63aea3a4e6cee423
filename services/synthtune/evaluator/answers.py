"""Answers from the base model and every adapter: transformers + PEFT on CPU, vLLM LoRA on GPU, or an endpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.progress import Progress
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Artifact


@dataclass
class Prompt:
    """One question as every model is asked it; ``tools`` (OpenAI format) for event-log episodes."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None


Answers = dict[str, list[list[tuple[str, str]]]]  # model name -> per prompt -> per sample (text, finish_reason)


def reply_text(result: Any) -> str:
    """The reply as scored: its text, and its tool calls (when the backend returns them apart) as
    OpenAI tool-call JSON after it, so a call made through the API and one written in the text score alike."""
    text = result.text or ""
    if result.tool_calls:
        text = (text + "\n" if text else "") + json.dumps({"tool_calls": result.tool_calls}, ensure_ascii=False)
    return text


def model_identity(name: str, base_dir: str | None = None) -> str:
    """What a model name points at: the resolved local folder (the embedded name and its converted
    folder are one model), or the name itself when it cannot be resolved here (an HF id, another machine's path)."""
    from synthtune.errors import SynthtuneError
    from synthtune.llm.models import resolve_model

    try:
        resolved = resolve_model(name, base_dir)
    except (SynthtuneError, OSError):
        return name
    path = Path(resolved)
    return str(path.resolve()) if path.exists() else resolved


def check_adapter_base(adapter: Artifact, base_model: str, base_dir: str | None = None) -> None:
    """An adapter trained on another base model is refused, naming both."""
    log = adapter.read_json("training_log.json") if "training_log.json" in adapter.files else {}
    trained_on = log.get("base_model")
    if not trained_on or trained_on == base_model:
        return
    if model_identity(str(trained_on), base_dir) != model_identity(base_model, base_dir):
        raise InvalidInput(f"adapter {adapter.id} was trained on {trained_on!r}, but evaluate uses base model {base_model!r}; "
                           "set train.base_model to the model the adapter was trained on, or retrain it")


def generate_answers(spec: PipelineSpec, model_path: str, adapters: dict[str, Artifact], prompts: list[Prompt], temperature: float,
                     samples: int, progress: Progress) -> Answers:
    """Answers from base and every tuned model with the backend ``evaluate.backend`` names."""
    backend = spec.evaluate.backend
    if backend == "transformers":
        return generate_transformers(spec, model_path, adapters, prompts, temperature, samples, progress)
    if backend == "openai":
        return generate_openai(spec, adapters, prompts, temperature, samples, progress)
    if backend == "vllm_server":
        from synthtune.evaluator.lora_server import generate_vllm_server

        return generate_vllm_server(spec, adapters, prompts, temperature, samples, progress)
    return generate_vllm(spec, adapters, prompts, temperature, samples, progress, model_path)


def answer_api_key_env(spec: PipelineSpec) -> str | None:
    """The variable holding the answer endpoint's key: ``evaluate.api_key_env``, else the teacher's when the
    teacher is the same endpoint. Never the judge's: that key is for the judge's endpoint."""
    ev, teacher = spec.evaluate, spec.generate.teacher
    if ev.api_key_env:
        return ev.api_key_env
    if teacher.backend == "openai" and teacher.api_key_env and (teacher.base_url or None) == (ev.base_url or None):
        return teacher.api_key_env
    return None


def training_log(adapter: Artifact) -> dict[str, Any]:
    return adapter.read_json("training_log.json") if "training_log.json" in adapter.files else {}


def is_full_model(adapter: Artifact) -> bool:
    """An `adapter` artifact from ``method: full`` holds a whole model (config.json + *.safetensors), no PEFT adapter."""
    files = adapter.files
    if "adapter_config.json" in files:
        return False
    has_weights = "config.json" in files and any(f.endswith(".safetensors") and "/" not in f for f in files)
    return has_weights or training_log(adapter).get("method") == "full"


def _check_full_model(key: str, adapter: Artifact) -> None:
    files = adapter.files
    if "config.json" not in files or not any(f.endswith(".safetensors") for f in files):
        raise InvalidInput(f"adapter {adapter.id} ({key}) was trained with method full but holds no model "
                           f"(config.json and *.safetensors expected; it has {', '.join(sorted(files)) or 'no files'})")


def split_adapters(adapters: dict[str, Artifact]) -> tuple[dict[str, Artifact], dict[str, Artifact]]:
    """(PEFT adapters, full models) by method key, in the order given."""
    full = {k: a for k, a in adapters.items() if is_full_model(a)}
    for key, art in full.items():
        _check_full_model(key, art)
    return {k: a for k, a in adapters.items() if k not in full}, full


def generate_transformers(spec: PipelineSpec, model_path: str, adapters: dict[str, Artifact], prompts: list[Prompt],
                          temperature: float, samples: int, progress: Progress) -> Answers:
    """{model name: per prompt, per sample (text, finish_reason)}. The base model is loaded once and LoRA adapters
    switched on it by PEFT; a full model (``method: full``) is loaded in its place for its turn, with the base's tokenizer."""
    import gc

    from synthtune.llm.chat import ChatRequest
    from synthtune.llm.transformers_backend import TransformersBackend
    from synthtune.spec.generate import ModelEndpointSpec

    ev = spec.evaluate
    backend = TransformersBackend(ModelEndpointSpec(backend="transformers", model=model_path, temperature=temperature,
                                                    max_tokens=ev.max_new_tokens, concurrency=ev.batch_size, seed=ev.seed))
    loras, fulls = split_adapters(adapters)
    names = ["base", *[f"tuned:{k}" for k in adapters]]
    out: dict[str, list[list[tuple[str, str]]]] = {n: [[] for _ in prompts] for n in names}
    peft_model: Any = None
    if loras:
        from peft import PeftModel

        first = next(iter(loras))
        peft_model = PeftModel.from_pretrained(backend.lm, str(loras[first].download()), adapter_name=first)
        for key, art in list(loras.items())[1:]:
            peft_model.load_adapter(str(art.download()), adapter_name=key)
        backend.lm = peft_model.eval()
    base_lm = backend.lm
    try:
        for name in names:
            key = name.split(":", 1)[1] if name != "base" else None
            if key in fulls:
                from transformers import AutoModelForCausalLM

                dtype = backend._torch.bfloat16 if backend.device == "cuda" else backend._torch.float32
                backend.lm = AutoModelForCausalLM.from_pretrained(str(fulls[key].download()), dtype=dtype, use_safetensors=True).to(backend.device).eval()
            try:
                for s in range(samples):
                    progress.check_cancelled()
                    requests = [ChatRequest(messages=p.messages, tools=p.tools, seed=ev.seed + s) for p in prompts]
                    if peft_model is None or key in fulls:
                        results = backend.complete(requests, progress)
                    elif key is None:
                        with peft_model.disable_adapter():
                            results = backend.complete(requests, progress)
                    else:
                        peft_model.set_adapter(key)
                        results = backend.complete(requests, progress)
                    for i, r in enumerate(results):
                        out[name][i].append((reply_text(r), r.finish_reason))
            finally:
                if key in fulls:
                    backend.lm = base_lm
                    gc.collect()
    finally:
        backend.close()
    return out


def generate_openai(spec: PipelineSpec, adapters: dict[str, Artifact], prompts: list[Prompt], temperature: float,
                    samples: int, progress: Progress) -> Answers:
    """An endpoint serving the base model under its name and each adapter under its method key."""
    served = {"base": spec.evaluate.served_model or spec.train.base_model, **{f"tuned:{k}": k for k in adapters}}
    return answer_by_name(spec, served, prompts, temperature, samples, progress)


def answer_by_name(spec: PipelineSpec, served: dict[str, str], prompts: list[Prompt], temperature: float,
                   samples: int, progress: Progress) -> Answers:
    """Answers from ``evaluate.base_url`` (and its replicas) for each model name, asked under the name ``served`` gives it."""
    from synthtune.llm.chat import ChatRequest
    from synthtune.llm.openai_backend import OpenAIBackend
    from synthtune.spec.generate import ModelEndpointSpec

    ev = spec.evaluate
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for name, model in served.items():
        backend = OpenAIBackend(ModelEndpointSpec(backend="openai", model=model, base_url=ev.base_url, base_urls=ev.base_urls,
                                                  temperature=temperature, max_tokens=ev.max_new_tokens,
                                                  api_key_env=answer_api_key_env(spec), concurrency=ev.batch_size, seed=ev.seed))
        out[name] = [[] for _ in prompts]
        try:
            for s in range(samples):
                progress.check_cancelled()
                results = backend.complete([ChatRequest(messages=p.messages, tools=p.tools, seed=ev.seed + s) for p in prompts], progress)
                for i, r in enumerate(results):
                    out[name][i].append((reply_text(r), r.finish_reason))
        finally:
            backend.close()
    return out


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def _lora_rank(spec: PipelineSpec, loras: dict[str, Artifact]) -> int:
    """The smallest rank vLLM accepts that fits every adapter (their adapter_config.json r, else train.lora.r)."""
    ranks = [spec.train.lora.r]
    for art in loras.values():
        try:
            ranks.append(int(art.read_json("adapter_config.json").get("r") or 0))
        except (KeyError, OSError, ValueError, TypeError):
            pass
    return next((r for r in VLLM_LORA_RANKS if r >= max(ranks)), max(ranks))


def _release_gpu(gc: Any) -> None:
    """Let a dropped engine's GPU memory go before the next one starts."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def generate_vllm(spec: PipelineSpec, adapters: dict[str, Artifact], prompts: list[Prompt], temperature: float,
                  samples: int, progress: Progress, model_path: str = "") -> Answers:
    """vLLM's offline engine (GPU only): base and one LoRARequest per adapter on one engine; a full model
    (``method: full``) as an engine of its own, started after the base engine is released."""
    import gc

    from synthtune.llm.models import resolve_model
    from synthtune.llm.vllm_backend import import_vllm

    vllm = import_vllm()
    ev = spec.evaluate
    base_path = model_path or resolve_model(spec.train.base_model, spec.base_dir)
    loras, fulls = split_adapters(adapters)
    out: dict[str, list[list[tuple[str, str]]]] = {}

    def answer(llm: Any, name: str, lora: Any) -> None:
        out[name] = [[] for _ in prompts]
        # LLM.chat takes one tools list per call: prompts are grouped by their tools.
        groups: dict[str, list[int]] = {}
        for j, p in enumerate(prompts):
            groups.setdefault(json.dumps(p.tools or [], sort_keys=True), []).append(j)
        for s in range(samples):
            progress.check_cancelled()
            params = vllm.SamplingParams(temperature=temperature, max_tokens=ev.max_new_tokens, seed=ev.seed + s)
            for indices in groups.values():
                tools = prompts[indices[0]].tools or None
                results = llm.chat([prompts[j].messages for j in indices], params, lora_request=lora, use_tqdm=False, tools=tools)
                for j, result in zip(indices, results, strict=True):
                    comp = result.outputs[0]
                    out[name][j].append((comp.text.strip(), "length" if comp.finish_reason == "length" else "stop"))
                progress.advance(len(indices))

    kwargs: dict[str, Any] = {"enable_lora": True, "max_lora_rank": _lora_rank(spec, loras), "max_loras": max(1, len(loras))} if loras else {}
    llm = vllm.LLM(model=base_path, seed=ev.seed, **kwargs)
    answer(llm, "base", None)
    for i, (key, art) in enumerate(loras.items(), 1):
        answer(llm, f"tuned:{key}", vllm.lora.request.LoRARequest(key, i, str(art.download())))
    del llm
    for key, art in fulls.items():
        _release_gpu(gc)
        llm = vllm.LLM(model=str(art.download()), tokenizer=base_path, seed=ev.seed)
        answer(llm, f"tuned:{key}", None)
        del llm
    _release_gpu(gc)
    return {name: out[name] for name in ["base", *[f"tuned:{k}" for k in adapters]]}
