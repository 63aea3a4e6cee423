"""What the executor hands a runner (one stage attempt), and the in-process runner.

A runner executes one stage attempt somewhere (this process, a stage service, a Kubernetes
Job) and returns the artifact it produced, or raises a domain error: ``RetryableError`` to be
retried, ``PermanentError``/``InvalidInput`` to fail the run with the stage's own message,
``Cancelled`` when ``progress`` was cancelled. A runner may keep small facts in
``task.handle`` (a Job's name, an operation's name) with ``task.remember(...)``, which persists them:
after a controller restart the next attempt finds them there and re-attaches to the work
instead of starting it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from synthtune.progress import Progress
from synthtune.spec import PipelineSpec
from synthtune.spec.graph import STAGES, kind_of, method_of
from synthtune.store import ArtifactRef, Store

StageFn = Callable[..., Any]


@dataclass
class StageTask:
    run_id: str
    stage: str  # "prepare", "generate:record_qa", "train:record_qa", "evaluate"
    spec: PipelineSpec
    spec_yaml: str
    base_dir: str | None
    inputs: dict[str, ArtifactRef | None]
    attempt: int = 1  # numbers this stage's submissions; never reused, even after the run is reopened
    handle: dict[str, Any] = field(default_factory=dict)
    save: Callable[[], None] = lambda: None
    lock: threading.RLock = field(default_factory=threading.RLock)  # guards handle (the run record is saved by other threads)

    def remember(self, **facts: Any) -> None:
        """Keep facts in the handle (None forgets one) and persist them at once."""
        with self.lock:
            for key, value in facts.items():
                if value is None:
                    self.handle.pop(key, None)
                else:
                    self.handle[key] = value
        self.save()

    @property
    def kind(self) -> str:
        return kind_of(self.stage)

    @property
    def method(self) -> str:
        return method_of(self.stage)


class Runner(Protocol):
    def run(self, task: StageTask, store: Store, progress: Progress) -> ArtifactRef: ...


def default_stages() -> dict[str, StageFn]:
    """The real stage entry points of the stage graph, imported on first use."""
    return {s.kind: s.entry_point() for s in STAGES}


class InProcessRunner:
    """Calls the stage function in this process (the embedded default)."""

    def __init__(self, stages: dict[str, StageFn]) -> None:
        self.stages = stages

    def run(self, task: StageTask, store: Store, progress: Progress) -> ArtifactRef:
        kwargs = {"method": task.method} if task.method else {}
        ref: ArtifactRef = self.stages[task.kind](task.spec, task.inputs, store, progress, **kwargs)
        return ref
