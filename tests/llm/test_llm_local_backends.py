"""In-process backends: transformers (tiny model; SmolLM2 in a slow test) and vllm's import guard."""

from __future__ import annotations

import sys
import types

import pytest

from synthtune.errors import PermanentError
from synthtune.llm.chat import ChatRequest, make_backend
from synthtune.spec.generate import ModelEndpointSpec


def ask(text: str, **extra) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], key=text, **extra)


def test_transformers_batched_left_padded_matches_one_at_a_time(tiny_model, one_torch_thread) -> None:  # type: ignore[no-untyped-def]
    prompts = ["Why is the pump loud?", "The bucket cylinder leaks oil at the rod seal, what now?", "Hi"]
    batched = make_backend(ModelEndpointSpec(backend="transformers", model=tiny_model, temperature=0, max_tokens=6, concurrency=3))
    single = make_backend(ModelEndpointSpec(backend="transformers", model=tiny_model, temperature=0, max_tokens=6, concurrency=1))
    a = batched.complete([ask(p) for p in prompts])
    b = single.complete([ask(p) for p in prompts])
    assert [r.key for r in a] == prompts
    # greedy decoding gives the same tokens whether a prompt is padded into a batch or alone
    assert [r.text for r in a] == [r.text for r in b]
    assert all(r.ok and r.completion_tokens <= 6 and r.prompt_tokens > 5 for r in a)
    assert {r.finish_reason for r in a} <= {"stop", "length"}
    assert batched.tokenizer.padding_side == "left"


def test_transformers_sampling_is_seeded_and_groups_settings(tiny_model, one_torch_thread) -> None:  # type: ignore[no-untyped-def]
    backend = make_backend(ModelEndpointSpec(backend="transformers", model=tiny_model, temperature=1.0, max_tokens=8, concurrency=4))
    one = backend.complete([ask("x", seed=1), ask("y", seed=2, max_tokens=3), ask("z", seed=1)])
    two = backend.complete([ask("x", seed=1), ask("y", seed=2, max_tokens=3), ask("z", seed=1)])
    assert [r.text for r in one] == [r.text for r in two]
    assert one[1].completion_tokens <= 3 and [r.key for r in one] == ["x", "y", "z"]


@pytest.mark.slow
def test_transformers_backend_with_the_embedded_smollm2(one_torch_thread) -> None:  # type: ignore[no-untyped-def]
    backend = make_backend(ModelEndpointSpec(backend="transformers", temperature=0, max_tokens=24, concurrency=2))
    results = backend.complete([
        ask("Name one part of a hydraulic excavator."),
        ChatRequest(messages=[{"role": "user", "content": "What is 2 + 2? Answer with a number."}], key="math"),
    ])
    assert all(r.ok and r.text.strip() for r in results)
    assert "4" in results[1].text
    assert results[0].completion_tokens <= 24


def test_vllm_backend_is_imported_only_when_used_and_says_what_is_missing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import synthtune.llm.backends
    import synthtune.llm.chat  # noqa: F401

    assert "vllm" not in sys.modules
    monkeypatch.setitem(sys.modules, "vllm", None)  # as on a machine without it
    with pytest.raises(PermanentError, match=r"needs the vllm package.*transformers.*openai"):
        make_backend(ModelEndpointSpec(backend="vllm", model="smollm2-135m-instruct"))


def fake_vllm(new_api: bool) -> types.ModuleType:
    """A stand-in for the vllm package with the API surface the backend uses."""
    vllm = types.ModuleType("vllm")
    params = types.ModuleType("vllm.sampling_params")

    class Params:
        def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
            self.kwargs = kwargs

    name = "StructuredOutputsParams" if new_api else "GuidedDecodingParams"
    setattr(params, name, type(name, (Params,), {}))
    vllm.sampling_params = params  # type: ignore[attr-defined]
    vllm.SamplingParams = type("SamplingParams", (Params,), {})  # type: ignore[attr-defined]

    class LLM:
        def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
            self.kwargs, self.calls = kwargs, []

        def chat(self, conversations, sampling_params, use_tqdm, tools):  # type: ignore[no-untyped-def]
            self.calls.append((conversations, sampling_params, tools))
            out = []
            for conv in conversations:
                text = '{"name": "STOP", "arguments": {}}' if tools else "ok: " + conv[-1]["content"]
                best = types.SimpleNamespace(text=text, finish_reason="stop", token_ids=[1, 2])
                out.append(types.SimpleNamespace(outputs=[best], prompt_token_ids=[1, 2, 3]))
            return out

    vllm.LLM = LLM  # type: ignore[attr-defined]
    return vllm


@pytest.mark.parametrize("new_api", [True, False])
def test_vllm_request_translation(monkeypatch, tmp_path, new_api) -> None:  # type: ignore[no-untyped-def]
    from synthtune.llm.vllm_backend import VLLMBackend, sampling_params

    vllm = fake_vllm(new_api)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    (tmp_path / "config.json").write_text("{}")
    spec = ModelEndpointSpec(backend="vllm", model=str(tmp_path), temperature=0.2, top_p=0.8, max_tokens=40, seed=5)
    schema = {"type": "object"}
    p = sampling_params(vllm, spec, ask("x", json_schema=schema, seed=9, max_tokens=7))
    assert {k: p.kwargs[k] for k in ("temperature", "top_p", "max_tokens", "seed")} == {"temperature": 0.2, "top_p": 0.8, "max_tokens": 7, "seed": 9}
    structured = p.kwargs["structured_outputs" if new_api else "guided_decoding"]
    assert structured.kwargs == {"json": schema}

    backend = VLLMBackend(spec)
    tools = [{"type": "function", "function": {"name": "STOP", "parameters": {}}}]
    results = backend.complete([ask("a"), ask("b", tools=tools), ask("c")])
    assert [r.key for r in results] == ["a", "b", "c"] and results[0].text == "ok: a"
    assert results[1].tool_calls[0]["function"]["name"] == "STOP" and results[1].finish_reason == "tool_calls"
    assert len(backend.llm.calls) == 2  # one engine call per distinct tools list
    assert backend.llm.kwargs["model"] == str(tmp_path)


def test_transformers_backend_refuses_pickled_weights(tiny_model, tmp_path, one_torch_thread) -> None:  # type: ignore[no-untyped-def]
    """A teacher folder with only pytorch_model.bin (a pickle that can run code when loaded) is refused."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from synthtune.errors import InvalidInput

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model, pickled, ignore=shutil.ignore_patterns("*.safetensors"))  # config and tokenizer
    torch.save(AutoModelForCausalLM.from_pretrained(tiny_model).state_dict(), pickled / "pytorch_model.bin")
    assert not list(pickled.glob("*.safetensors")) and (pickled / "pytorch_model.bin").is_file()
    with pytest.raises(InvalidInput, match="pickled .bin weights are refused"):
        make_backend(ModelEndpointSpec(backend="transformers", model=str(pickled)))
