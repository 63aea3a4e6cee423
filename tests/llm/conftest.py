"""LLM test fixtures: the loopback server module on the path, and a tiny random-weight chat model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from torch_threads import one_torch_thread  # noqa: E402,F401  (a fixture)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tests' one tiny Llama (tests/tiny_models.py): loads in a second."""
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-chat-model"))
