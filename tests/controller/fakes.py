"""Fake stage functions for controller tests: tiny real artifacts, invocation counts in a file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput, RetryableError, StageSkipped


def make_stages(count_file: Path, sleep_s: float = 0.0, fail: dict[str, str] | None = None) -> dict[str, Any]:
    fail = fail or {}

    def record(name: str) -> None:
        with open(count_file, "a") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())

    def artifact(store: Any, kind: str, parents: list[str], config: Any, stage: str, progress: Any) -> Any:
        art_id = store.artifact_id(kind, parents, config)
        if (found := store.find(art_id)) is not None:
            return found  # content cache: the real stages do the same
        record(stage)
        started = time.time()
        while time.time() - started < sleep_s:
            time.sleep(0.02)
            progress.check_cancelled()
        with open(count_file.with_suffix(".times"), "a") as f:
            f.write(f"{stage} {started} {time.time()}\n")
        mode = fail.get(stage)
        if mode == "skip":
            raise StageSkipped(f"{stage}: no usable examples")
        if mode == "retry-once" and not (count_file.parent / f"{stage}.retried").exists():
            (count_file.parent / f"{stage}.retried").write_text("1")
            raise RetryableError(f"{stage}: teacher busy (429)")
        if mode == "permanent":
            raise InvalidInput(f"{stage}: records.csv:7: column 'Action' is empty")
        with store.create(kind, parents, config, "fake") as w:
            w.write_json("stats.json", {"records": 3, "rejected": 1})
            w.stats.update(records=3, rejected=1)
            return w.commit()

    def prepare(spec: Any, inputs: Any, store: Any, progress: Any) -> Any:
        progress.start(1, "fake prepare")
        ref = artifact(store, "prepared", [], {"name": spec.name, "paths": spec.source.paths}, "prepare", progress)
        progress.advance(1)
        return ref

    def generate(spec: Any, inputs: Any, store: Any, progress: Any, method: str) -> Any:
        return artifact(store, "synthetic", [inputs["prepared"].id], {"m": method}, f"generate:{method}", progress)

    def train(spec: Any, inputs: Any, store: Any, progress: Any, method: str) -> Any:
        return artifact(store, "adapter", [inputs["synthetic"].id], {"m": method}, f"train:{method}", progress)

    def evaluate(spec: Any, inputs: Any, store: Any, progress: Any) -> Any:
        parents = sorted(v.id for v in inputs.values())
        return artifact(store, "evaluation", parents, {}, "evaluate", progress)

    def report(store: Any, run: Any, spec: Any) -> tuple[str, str]:
        record("report")
        store.put_json(f"runs/{run.run_id}/report.json", {"run_id": run.run_id, "status": run.status})
        store.put_text(f"runs/{run.run_id}/report.html", "<html></html>")
        return f"runs/{run.run_id}/report.json", f"runs/{run.run_id}/report.html"

    return {"prepare": prepare, "generate": generate, "train": train, "evaluate": evaluate, "report": report}


def intervals(count_file: Path) -> dict[str, tuple[float, float]]:
    """stage -> (start, end) of its last invocation."""
    path = count_file.with_suffix(".times")
    lines = path.read_text().split("\n") if path.exists() else []
    return {p[0]: (float(p[1]), float(p[2])) for p in (line.split() for line in lines) if p}


def calls(count_file: Path) -> list[str]:
    return count_file.read_text().split() if count_file.exists() else []


SPEC = """\
version: 1
name: fake
source: {paths: [a.csv]}
generate:
  methods: [{name: record_qa}, {name: persona}]
"""


def spec_yaml(**kw: Any) -> str:
    return SPEC + "".join(f"{k}: {json.dumps(v)}\n" for k, v in kw.items())
