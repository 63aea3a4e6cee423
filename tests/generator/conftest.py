"""Generator test fixtures; helpers live in gen_fixtures.py (a plain module, so imports are unambiguous)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "llm"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def scripted():  # type: ignore[no-untyped-def]
    from teacher_script import ScriptedBackend

    return ScriptedBackend()


@pytest.fixture
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Real-model tests on a shared 2-core machine: one thread avoids OpenMP spin contention (6x faster there)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
