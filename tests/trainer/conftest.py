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
    """The tests' one tiny Llama (tests/tiny_models.py), four key/value heads: trains in seconds on CPU."""
    from tiny_models import save_tiny_llama

    return Path(save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), num_key_value_heads=4))


@pytest.fixture
def overfit() -> list[dict[str, Any]]:
    return [dict(r) for r in OVERFIT]
