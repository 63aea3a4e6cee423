"""Scalar curves read back from TensorBoard event files (an adapter artifact's ``runs/``), with TensorBoard's own reader.

The trainer writes them (``train/loss``, ``train/learning_rate``, ``train/grad_norm``,
``train/tokens_per_s``, ``eval/loss``, ...); the report draws its training curves from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag under ``folder`` (searched recursively) as ``[(step, value), ...]`` in step order."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    curves: dict[str, dict[int, float]] = {}
    mux = EventMultiplexer(size_guidance={"scalars": 0})  # 0: keep every point, no sampling
    mux.AddRunsFromDirectory(str(folder))
    mux.Reload()
    for run, tags in mux.Runs().items():
        for name in tags.get("scalars", []):
            for event in mux.Scalars(run, name):
                curves.setdefault(name, {})[int(event.step)] = float(event.value)
    return {name: sorted(points.items()) for name, points in sorted(curves.items())}


class _HasFiles(Protocol):
    @property
    def files(self) -> Mapping[str, Any]: ...

    def local_path(self, name: str) -> Path: ...


def artifact_curves(artifact: _HasFiles, folder: str = "runs") -> dict[str, list[tuple[int, float]]]:
    """The curves of an artifact's event files (an adapter's ``runs/``), fetching only those files; {} without any."""
    names = [n for n in artifact.files if n.startswith(f"{folder}/")]
    if not names:
        return {}
    root = [artifact.local_path(n) for n in names][0]
    for _ in Path(names[0]).parts[1:]:  # up from runs/<...>/events.* to runs/
        root = root.parent
    return read_scalars(root)
