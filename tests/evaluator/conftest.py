"""Evaluator fixtures: the generator's and llm tests' helper modules on the path, prepared/adapter artifacts, a tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "generator", HERE.parent / "llm"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from torch_threads import one_torch_thread  # noqa: E402,F401  (a fixture)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer Llama with random weights and SmolLM2's tokenizer and chat template: loads in a second."""
    from eval_fixtures import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-base"), seed=0)
