"""Checkpoints mirrored to the artifact store; a checkpoint counts only once its marker is written last."""

from __future__ import annotations

import re
import time
from pathlib import Path

from synthtune.store import Store

_STEP = re.compile(r"checkpoint-(\d+)/COMPLETE$")


class StoreCheckpoints:
    """``work/train/<adapter id>/checkpoint-<step>/...`` with a ``COMPLETE`` marker."""

    def __init__(self, store: Store, art_id: str) -> None:
        self.store = store
        self.prefix = f"work/train/{art_id}"

    def upload(self, local_dir: Path, step: int) -> None:
        base = f"{self.prefix}/checkpoint-{step}"
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        for path in files:
            self.store.backend.put_file(f"{base}/{path.relative_to(local_dir).as_posix()}", path)
        marker = {"step": step, "files": [p.relative_to(local_dir).as_posix() for p in files], "time": time.time()}
        self.store.put_json(f"{base}/COMPLETE", marker)

    def latest_step(self) -> int | None:
        steps = [int(m.group(1)) for key in self.store.list_keys(self.prefix + "/") if (m := _STEP.search(key))]
        return max(steps) if steps else None

    def download(self, step: int, dest: Path) -> Path:
        base = f"{self.prefix}/checkpoint-{step}"
        marker = self.store.get_json(f"{base}/COMPLETE")
        target = dest / f"checkpoint-{step}"
        for name in marker["files"]:
            out = target / name
            out.parent.mkdir(parents=True, exist_ok=True)
            with self.store.backend.open_read(f"{base}/{name}") as src, open(out, "wb") as f:
                while chunk := src.read(8 * 1024 * 1024):
                    f.write(chunk)
        return target

    def clear(self) -> None:
        self.store.backend.delete_prefix(self.prefix)
