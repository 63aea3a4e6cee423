"""Progress reporting shared by stages, CLI (rich bars) and gRPC (operation events).

A stage calls ``progress.start(total, description)``, then ``progress.advance(n)``, and may
call ``progress.note(text)``. It checks ``progress.cancelled`` at safe points and raises
``Cancelled`` through ``progress.check_cancelled()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from synthtune.errors import Cancelled


@dataclass
class ProgressEvent:
    stage: str
    description: str
    completed: float
    total: float | None
    message: str = ""
    time: float = field(default_factory=time.time)


Listener = Callable[[ProgressEvent], None]


class Progress:
    """Thread-safe progress sink; listeners get every update."""

    def __init__(self, stage: str = "", listeners: list[Listener] | None = None) -> None:
        self.stage = stage
        self._listeners: list[Listener] = list(listeners or [])
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.description = ""
        self.completed = 0.0
        self.total: float | None = None

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def child(self, stage: str) -> Progress:
        """A progress for a sub-step sharing listeners and cancellation."""
        sub = Progress(stage, self._listeners)
        sub._cancel = self._cancel
        return sub

    def _emit(self, message: str = "") -> None:
        event = ProgressEvent(self.stage, self.description, self.completed, self.total, message)
        for listener in list(self._listeners):
            listener(event)

    def start(self, total: float | None, description: str) -> None:
        with self._lock:
            self.total, self.description, self.completed = total, description, 0.0
        self._emit()

    def advance(self, n: float = 1.0) -> None:
        with self._lock:
            self.completed += n
        self._emit()

    def update(self, completed: float, total: float | None, description: str) -> None:
        """Set the state at once (progress relayed from another process)."""
        with self._lock:
            self.completed, self.total, self.description = completed, total, description
        self._emit()

    def note(self, message: str) -> None:
        self._emit(message)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait_cancelled(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the work is cancelled."""
        return self._cancel.wait(seconds)

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"{self.stage or 'work'} cancelled")


NULL_PROGRESS = Progress("null")
