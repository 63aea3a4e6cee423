"""Trainer fixtures: the SmolLM2 tokenizer, a tiny random Llama on it, synthetic rows shaped like the generator's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trainer_helpers import OVERFIT, generator_row

from synthtune.llm.models import resolve_model


@pytest.fixture
def row() -> Callable[..., dict[str, Any]]:
    return generator_row


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(smollm2_path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template: trains in seconds on CPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 vocab_size=len(tokenizer), tie_word_embeddings=True)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def overfit() -> list[dict[str, Any]]:
    return [dict(r) for r in OVERFIT]
