"""Generator test fixtures; helpers live in gen_fixtures.py (a plain module, so imports are unambiguous)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "llm"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from torch_threads import one_torch_thread  # noqa: E402,F401  (a fixture)


@pytest.fixture
def scripted():  # type: ignore[no-untyped-def]
    from teacher_script import ScriptedBackend

    return ScriptedBackend()
