"""Progress events reach listeners; cancellation is shared with child progress."""

import pytest

from synthtune.errors import Cancelled
from synthtune.progress import Progress


def test_listeners_see_start_advance_and_notes():
    events = []
    p = Progress("prepare", [events.append])
    p.start(10, "reading")
    p.advance(3)
    p.note("half way")
    assert [(e.completed, e.total, e.message) for e in events] == [(0, 10, ""), (3, 10, ""), (3, 10, "half way")]
    assert all(e.stage == "prepare" for e in events)


def test_cancel_propagates_to_children():
    parent = Progress("run")
    child = parent.child("train")
    parent.cancel()
    assert child.cancelled
    with pytest.raises(Cancelled):
        child.check_cancelled()
