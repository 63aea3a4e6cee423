"""evaluate.backend vllm_server against a loopback double of vLLM's server (transformers + PEFT on SmolLM2):
each adapter is loaded, asked and unloaded; refusals and a server that is down are clear errors."""

from __future__ import annotations

import pytest
from eval_fixtures import make_adapter, make_prepared, pipeline, read_evaluation, ticket
from gen_port import free_port
from vllm_lora_double import VllmLoraDouble

from synthtune.errors import InvalidInput
from synthtune.progress import Progress

BASE = "smollm2-135m-instruct"
TICKETS = [ticket(2, "Caps crooked on line 3", "Reset the chuck"), ticket(3, "Labels wrinkled", "Warm the glue")]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Two random (non-zero) LoRA adapters on the embedded SmolLM2, rank 4, and one of rank 32."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from synthtune.llm.models import resolve_model

    root = tmp_path_factory.mktemp("smollm2-loras")
    base = AutoModelForCausalLM.from_pretrained(resolve_model(BASE))
    out = {}
    for name, rank, seed in (("a", 4, 1), ("b", 4, 2), ("wide", 32, 3)):
        torch.manual_seed(seed)
        model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        model.save_pretrained(root / name)
        base = model.unload()
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    from synthtune.llm.models import resolve_model

    with VllmLoraDouble(resolve_model(BASE), BASE, max_lora_rank=16, api_key="eval-key") as double:
        yield double


def _spec(server, tmp_path, **evaluate):  # type: ignore[no-untyped-def]
    settings = {"backend": "vllm_server", "base_url": server.base_url, "api_key_env": "EVAL_SERVER_KEY", "metrics": ["rouge"],
                "forgetting_probe": False, "max_new_tokens": 8, "lora_dir": str(tmp_path / "shared-adapters"), **evaluate}
    return pipeline(base_model=BASE, methods=[{"name": "record_qa"}, {"name": "persona"}], **settings)


def test_each_adapter_is_loaded_asked_and_unloaded_and_tuned_answers_differ(server, adapters, file_store, tmp_path, monkeypatch,
                                                                             one_torch_thread):
    from synthtune.evaluator import run

    monkeypatch.setenv("EVAL_SERVER_KEY", "eval-key")
    server.events.clear()
    inputs = {"prepared": make_prepared(file_store, TICKETS),
              "adapter:record_qa": make_adapter(file_store, BASE, adapters["a"]),
              "adapter:persona": make_adapter(file_store, BASE, adapters["b"])}
    metrics, preds = read_evaluation(file_store, run(_spec(server, tmp_path), inputs, file_store, Progress()))

    ids = {k: file_store.open(inputs[f"adapter:{k}"]).id for k in ("record_qa", "persona")}
    names = {k: f"synthtune-{k}-{ids[k][-12:]}" for k in ids}
    compact = [e for i, e in enumerate(server.events) if i == 0 or e != server.events[i - 1]]
    assert compact == [("chat", BASE), ("load", names["record_qa"]), ("chat", names["record_qa"]), ("unload", names["record_qa"]),
                       ("load", names["persona"]), ("chat", names["persona"]), ("unload", names["persona"])]
    assert server.events.count(("chat", names["record_qa"])) == len(TICKETS)
    assert server.loaded == {}  # nothing left on the server
    assert list((tmp_path / "shared-adapters").iterdir()) == []  # the copies on the shared volume are gone
    answers = {m: [p["prediction"] for p in preds if p["model"] == m] for m in ("base", "tuned:record_qa", "tuned:persona")}
    assert all(a.strip() for a in answers["base"])
    assert answers["tuned:record_qa"] != answers["base"] and answers["tuned:persona"] != answers["base"]
    assert answers["tuned:record_qa"] != answers["tuned:persona"]
    assert set(metrics["models"]) == {"base", "tuned:record_qa", "tuned:persona"}


def test_an_adapter_the_server_refuses_fails_with_its_message_and_the_adapters_id(server, adapters, file_store, tmp_path,
                                                                                   monkeypatch, one_torch_thread):
    from synthtune.evaluator import run

    monkeypatch.setenv("EVAL_SERVER_KEY", "eval-key")
    inputs = {"prepared": make_prepared(file_store, TICKETS), "adapter:record_qa": make_adapter(file_store, BASE, adapters["wide"])}
    art_id = file_store.open(inputs["adapter:record_qa"]).id
    spec = _spec(server, tmp_path, max_new_tokens=2)
    spec.generate.methods = spec.generate.methods[:1]
    with pytest.raises(InvalidInput) as err:
        run(spec, inputs, file_store, Progress())
    message = str(err.value)
    assert art_id in message and server.base_url in message and "record_qa" in message
    assert "LoRA rank 32 is greater than max_lora_rank 16." in message
    assert server.loaded == {}


def test_a_wrong_key_and_a_base_the_server_does_not_serve_are_clear(server, file_store, tmp_path, monkeypatch):
    from synthtune.errors import PermanentError
    from synthtune.evaluator import run

    inputs = {"prepared": make_prepared(file_store, TICKETS)}
    monkeypatch.setenv("EVAL_SERVER_KEY", "wrong")
    with pytest.raises(PermanentError, match=rf"vLLM server at {server.base_url} refused the API key \(HTTP 401\)"):
        run(_spec(server, tmp_path), inputs, file_store, Progress())
    monkeypatch.setenv("EVAL_SERVER_KEY", "eval-key")
    with pytest.raises(InvalidInput, match=rf"serves {BASE}, not 'other-model'.*evaluate.served_model"):
        run(_spec(server, tmp_path, served_model="other-model"), inputs, file_store, Progress())


def test_a_server_that_is_down_is_retried_then_named(file_store, tmp_path, monkeypatch):
    from synthtune.errors import RetryableError
    from synthtune.evaluator import lora_server, run

    monkeypatch.setattr(lora_server, "BACKOFF_S", 0.01)
    url = f"http://127.0.0.1:{free_port()}/v1"
    spec = pipeline(base_model=BASE, backend="vllm_server", base_url=url, metrics=["rouge"], forgetting_probe=False)
    with pytest.raises(RetryableError, match=rf"vLLM server at {url} is unreachable after 5 attempts"):
        run(spec, {"prepared": make_prepared(file_store, TICKETS)}, file_store, Progress())


def test_vllm_server_needs_a_base_url_and_refuses_a_full_model(file_store, tmp_path):
    from pydantic import ValidationError

    from synthtune.evaluator.lora_server import generate_vllm_server

    with pytest.raises(ValidationError, match="vllm_server needs evaluate.base_url"):
        pipeline(backend="vllm_server")
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    (full / "model.safetensors").write_bytes(b"weights")
    art = file_store.open(make_adapter(file_store, BASE, full, method="full"))
    spec = pipeline(backend="vllm_server", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(InvalidInput, match=rf"full_ft \({art.id}\) holds a whole model.*backend vllm \(the offline engine"):
        generate_vllm_server(spec, {"full_ft": art}, [], 0.0, 1, Progress())


def test_every_server_url_obeys_the_operators_endpoint_policy(file_store, monkeypatch):
    from synthtune.evaluator import run

    monkeypatch.setenv("SYNTHTUNE_ALLOWED_ENDPOINTS", "http://127.0.0.1:9/v1")
    spec = pipeline(base_model=BASE, backend="vllm_server", base_url="http://127.0.0.1:9/v1", base_urls=["http://elsewhere:8000/v1"],
                    metrics=["rouge"], forgetting_probe=False)
    with pytest.raises(InvalidInput, match="base_url http://elsewhere:8000/v1 is not allowed here"):
        run(spec, {"prepared": make_prepared(file_store, TICKETS)}, file_store, Progress())
