"""Training state in the store, where every Ray worker and the driver can reach it, whatever pod it runs on.

``work/train/<adapter id>/`` holds:

- ``checkpoint-<step>/...`` with a ``COMPLETE`` marker written last, by rank 0, after every rank
  uploaded its own files (``rng_state_<rank>.pth``): a checkpoint without the marker does not exist;
- ``result/...`` with a ``COMPLETE`` marker: what rank 0 trained (adapter or model files and
  ``summary.json``), for the driver to turn into the artifact;
- ``progress.json``: rank 0's latest step and log line, for the driver's progress;
- ``.trainer``: the claim of the one train stage training this adapter (two runs of one pipeline
  at once would otherwise clear and overwrite each other's checkpoints and result).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthtune.errors import NotFound
from synthtune.store import IntegrityError, Store
from synthtune.store.artifacts import CLAIM_POLL_S, _claim_text, _dead_here, stale_claim_s
from synthtune.store.backend import copy_hashing

log = logging.getLogger(__name__)

_STEP = re.compile(r"checkpoint-(\d+)/COMPLETE$")
HASH_SUFFIX = ".sha256"  # beside each uploaded checkpoint file: its digest, for the marker


def _copy_down(store: Store, key: str, out: Path, sha256: str | None) -> None:
    """Download ``key``; IntegrityError when it does not hash to what its marker recorded."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with store.backend.open_read(key) as src, open(out, "wb") as f:
        digest = copy_hashing(src, f)
    if sha256 is not None and digest != sha256:
        out.unlink(missing_ok=True)
        raise IntegrityError(f"{store.backend.uri(key)}: sha256 mismatch (marker {sha256[:12]}…, stored {digest[:12]}…): "
                             "the checkpoint file was changed or corrupted")


class StoreCheckpoints:
    """Checkpoints, the result and the progress of one training run, under ``work/train/<adapter id>``."""

    def __init__(self, store: Store, art_id: str) -> None:
        self.store, self.art_id = store, art_id
        self.prefix = f"work/train/{art_id}"

    # the one trainer -----------------------------------------------------------------------
    @contextmanager
    def claim(self, on_wait: Callable[[str], None] = log.info) -> Iterator[None]:
        """Return once this process is the one training this adapter (its claim beats every quarter of the
        stale time while the block runs) or once the artifact exists because another trainer committed it.

        A trainer that stops beating for SYNTHTUNE_COMMIT_STALE_S (or whose process is gone, on this
        host) is taken over: its checkpoints stay, so the taker resumes from them."""
        key, owner = f"{self.prefix}/.trainer", uuid.uuid4().hex
        while not self.store.backend.put_bytes_if_absent(key, _claim_text(owner, 0)):
            on_wait(f"another run is training {self.art_id}; waiting for its adapter")
            if self._wait_for_trainer(key):
                yield
                return
        done = threading.Event()
        beat = threading.Thread(target=self._beat, args=(key, owner, done), name="train-claim", daemon=True)
        beat.start()
        try:
            yield
        finally:
            done.set()
            beat.join()
            self._release(key, owner)

    def _wait_for_trainer(self, key: str) -> bool:
        """True once the adapter is committed; False when the claim is gone or stale (claim it again)."""
        last, since = b"", time.monotonic()
        while self.store.find(self.art_id) is None:
            try:
                with self.store.backend.open_read(key) as f:
                    current = f.read()
            except NotFound:
                return False
            if current != last:
                last, since = current, time.monotonic()
            if _dead_here(current) or time.monotonic() - since > stale_claim_s():
                log.warning("adapter %s: the trainer holding %s stopped; taking over", self.art_id, key)
                self.store.backend.delete_prefix(key)
                return False
            time.sleep(CLAIM_POLL_S)
        return True

    def _beat(self, key: str, owner: str, done: threading.Event) -> None:
        beats = 0
        while not done.wait(max(0.05, stale_claim_s() / 4)):
            beats += 1
            try:
                self.store.backend.put_bytes(key, _claim_text(owner, beats))
            except Exception:  # a missed beat only risks a takeover
                log.warning("adapter %s: could not refresh the trainer claim", self.art_id, exc_info=True)

    def _release(self, key: str, owner: str) -> None:
        try:
            with self.store.backend.open_read(key) as f:
                mine = json.loads(f.read() or b"{}").get("owner") == owner
        except (NotFound, ValueError):
            return
        if mine:
            self.store.backend.delete_prefix(key)

    # checkpoints ---------------------------------------------------------------------------
    def upload_files(self, local_dir: Path, step: int, names: list[str] | None = None) -> list[str]:
        """Upload ``names`` (default: every file) of a local checkpoint folder; no marker yet."""
        base = f"{self.prefix}/checkpoint-{step}"
        if names is None:
            names = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file())
        for name in names:
            digest = self.store.backend.put_file(f"{base}/{name}", local_dir / name)
            self.store.backend.put_bytes(f"{base}/{name}{HASH_SUFFIX}", digest.encode())  # rank 0's marker collects it
        return names

    def mark_complete(self, step: int) -> None:
        """Write the marker over every file uploaded for ``step`` (by any rank), then drop older checkpoints."""
        base = f"{self.prefix}/checkpoint-{step}"
        keys = [k[len(base) + 1 :] for k in self.store.list_keys(base + "/") if not k.endswith("/COMPLETE")]
        files = sorted(k for k in keys if not k.endswith(HASH_SUFFIX))
        hashes = {name: self.store.get_text(f"{base}/{name}{HASH_SUFFIX}") for name in files if f"{name}{HASH_SUFFIX}" in keys}
        self.store.put_json(f"{base}/COMPLETE", {"step": step, "files": files, "sha256": hashes, "time": time.time()})
        for old in self.steps():
            if old < step:  # the marker goes first, so a half-deleted checkpoint is never taken for complete
                self.store.backend.delete_prefix(f"{self.prefix}/checkpoint-{old}/COMPLETE")
                self.store.backend.delete_prefix(f"{self.prefix}/checkpoint-{old}")

    def upload(self, local_dir: Path, step: int) -> None:
        """A single process's checkpoint: every file, then the marker."""
        self.upload_files(local_dir, step)
        self.mark_complete(step)

    def steps(self) -> list[int]:
        return sorted(int(m.group(1)) for key in self.store.list_keys(self.prefix + "/") if (m := _STEP.search(key)))

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def download(self, step: int, dest: Path) -> Path:
        base = f"{self.prefix}/checkpoint-{step}"
        marker = self.store.get_json(f"{base}/COMPLETE")
        target = dest / f"checkpoint-{step}"
        hashes = marker.get("sha256") or {}
        for name in marker["files"]:
            _copy_down(self.store, f"{base}/{name}", target / name, hashes.get(name))
        return target

    # the result ----------------------------------------------------------------------------
    def publish_result(self, local_dir: Path) -> None:
        names = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file())
        hashes = {name: self.store.backend.put_file(f"{self.prefix}/result/{name}", local_dir / name) for name in names}
        self.store.put_json(f"{self.prefix}/result/COMPLETE", {"files": names, "sha256": hashes, "time": time.time()})

    def fetch_result(self, dest: Path) -> Path | None:
        """The published result in ``dest``, or None when no rank published one."""
        key = f"{self.prefix}/result/COMPLETE"
        if not self.store.exists(key):
            return None
        marker = self.store.get_json(key)
        hashes = marker.get("sha256") or {}
        for name in marker["files"]:
            _copy_down(self.store, f"{self.prefix}/result/{name}", dest / name, hashes.get(name))
        return dest

    def clear_result(self) -> None:
        self.store.backend.delete_prefix(f"{self.prefix}/result/COMPLETE")
        self.store.backend.delete_prefix(f"{self.prefix}/result")

    # progress ------------------------------------------------------------------------------
    def put_progress(self, state: dict[str, Any]) -> None:
        self.store.backend.put_bytes(f"{self.prefix}/progress.json", json.dumps(state).encode())

    def get_progress(self) -> dict[str, Any] | None:
        try:
            with self.store.backend.open_read(f"{self.prefix}/progress.json") as f:
                return json.loads(f.read())
        except Exception:  # noqa: BLE001 - not written yet, or being replaced
            return None

    def clear(self) -> None:
        self.store.backend.delete_prefix(self.prefix)
