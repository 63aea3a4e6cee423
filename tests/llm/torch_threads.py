"""A fixture shared by the LLM and generator tests that run real weights."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Real-model tests on a shared 2-core machine: one thread avoids OpenMP spin contention (6x faster there)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
