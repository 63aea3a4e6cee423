"""Rich progress bars on standard error, one per stage, fed by ProgressEvents."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from synthtune.progress import ProgressEvent

stderr = Console(stderr=True)


class StageBars:
    """A bar per stage; notes are printed above the bars."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.fields[stage]:<22}"), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=stderr, transient=False,
            disable=quiet,
        )
        self.tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> StageBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, ev: ProgressEvent) -> None:
        stage = ev.stage.split("/")[-1] if ev.stage else "run"
        with self._lock:
            task = self.tasks.get(stage)
            if task is None:
                task = self.progress.add_task(ev.description or stage, total=ev.total, stage=stage)
                self.tasks[stage] = task
            self.progress.update(task, description=ev.description[:60], total=ev.total, completed=ev.completed)
        if ev.message and not self.quiet:
            self.progress.console.print(f"[dim]{stage}:[/dim] {ev.message}")
