"""Artifacts: folders of files plus ``manifest.json``, written last so nothing is half-visible."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune import __version__
from synthtune.errors import InvalidInput, NotFound, PermanentError
from synthtune.store.backend import CHUNK, Backend, copy_hashing
from synthtune.store.keys import check_key

ARTIFACT_PREFIX = "artifacts"
MANIFEST = "manifest.json"
CLAIM = ".commit"  # held by the one writer uploading an artifact's files
CLAIM_POLL_S = 0.2
log = logging.getLogger("synthtune.store")


def stale_claim_s() -> float:
    """Seconds a claim may go without a heartbeat before another writer takes over (its writer died)."""
    return float(os.environ.get("SYNTHTUNE_COMMIT_STALE_S", "30"))


def _dead_here(claim: bytes) -> bool:
    """True when the claim's writer ran on this host and its process is gone (killed): no need to wait."""
    try:
        info = json.loads(claim)
        if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int) or info["pid"] == os.getpid():
            return False
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except (ValueError, AttributeError, PermissionError, OSError):
        return False
    return False


def _claim_text(owner: str, files_done: int) -> bytes:
    return json.dumps({"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "files": files_done,
                       "time": dt.datetime.now(dt.UTC).isoformat()}).encode()
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class IntegrityError(PermanentError):
    """A stored file does not match its manifest (changed, truncated or corrupted)."""


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a lowercase word such as ``prepared``, else raise InvalidInput."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InvalidInput(f"artifact kind {kind!r}: use lowercase letters, digits and '_' (e.g. 'prepared')")
    return kind


def check_artifact_id(art_id: str) -> str:
    """Return ``art_id`` if it is one safe path segment (letters, digits, '.', '_', '-'), else raise InvalidInput."""
    if not isinstance(art_id, str) or not _ID.match(art_id) or ".." in art_id:
        raise InvalidInput(f"artifact id {art_id!r}: expected one segment of letters, digits, '.', '_' or '-'")
    return art_id


def jsonable(obj: Any) -> Any:
    """JSON fallback: pydantic models and dataclasses by value, sets sorted, anything else as text."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


@dataclass(frozen=True)
class ArtifactRef:
    kind: str
    id: str
    uri: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "uri": self.uri}


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, pydantic models by their fields."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=jsonable)


def artifact_id(kind: str, parents: list[str], config: Any, code_version: str = __version__) -> str:
    """Id from content: same kind, parents, config and code version give the same id (a cache key)."""
    check_kind(kind)
    digest = hashlib.sha256(canonical_json([kind, sorted(parents), config, code_version]).encode()).hexdigest()
    return f"{kind}-{digest[:20]}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class ArtifactWriter:
    """Stage files in a local folder, then ``commit()`` uploads them and writes the manifest last."""

    def __init__(self, backend: Backend, kind: str, art_id: str, parents: list[str], spec: Any, producer: str) -> None:
        self.backend, self.kind, self.id = backend, check_kind(kind), check_artifact_id(art_id)
        self.parents = [check_artifact_id(p) for p in parents]
        self.spec, self.producer = spec, producer
        self.dir = Path(tempfile.mkdtemp(prefix=f"synthtune-{art_id}-"))
        self.stats: dict[str, Any] = {}
        self.committed: ArtifactRef | None = None

    def path(self, name: str) -> Path:
        """A local path for file ``name`` (may contain '/'); write it before ``commit()``."""
        p = self.dir / check_key(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path(name)
        p.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=jsonable) + "\n", encoding="utf-8")
        return p

    def write_jsonl(self, name: str, rows: Any) -> Path:
        p = self.path(name)
        with open(p, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=jsonable) + "\n")
        return p

    def commit(self) -> ArtifactRef:
        """Upload every file, then the manifest; until the manifest lands the artifact is invisible.

        One writer at a time per id: a writer first claims ``<id>/.commit`` with a create-only write;
        another writer of the same id (a second run of one pipeline) waits for that manifest and
        returns it. An id that has a manifest is never written again (its content is the same by
        construction: the id is a hash of kind, parents and config).
        """
        if self.committed is not None:
            return self.committed
        if not self.dir.is_dir():
            raise PermanentError(f"artifact {self.id}: the writer was discarded before commit")
        prefix = f"{ARTIFACT_PREFIX}/{self.id}"
        owner = uuid.uuid4().hex
        while not self._published(prefix):
            if self.backend.put_bytes_if_absent(f"{prefix}/{CLAIM}", _claim_text(owner, 0)):
                alive = threading.Event()
                beat = threading.Thread(target=self._heartbeat, args=(prefix, owner, alive), name="commit-heartbeat", daemon=True)
                beat.start()
                try:
                    self._upload_and_publish(prefix)
                finally:
                    alive.set()
                    beat.join()
                    self._release(prefix, owner)
                break
            self._wait_for_writer(prefix)
        self.committed = ArtifactRef(self.kind, self.id, self.backend.uri(prefix))
        self.discard()
        return self.committed

    def _published(self, prefix: str) -> bool:
        return self.backend.exists(f"{prefix}/{MANIFEST}")

    def _heartbeat(self, prefix: str, owner: str, done: threading.Event) -> None:
        """Rewrite the claim every quarter of the stale time, so waiting writers see this one is alive."""
        beats = 0
        while not done.wait(max(0.05, stale_claim_s() / 4)):
            beats += 1
            try:
                self.backend.put_bytes(f"{prefix}/{CLAIM}", _claim_text(owner, beats))
            except Exception:  # a missed beat only risks a takeover; the upload reports real faults
                log.warning("artifact %s: could not refresh the commit claim", self.id, exc_info=True)

    def _upload_and_publish(self, prefix: str) -> None:
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(p for p in self.dir.rglob("*") if p.is_file()):
            name = path.relative_to(self.dir).as_posix()
            if name in (MANIFEST, CLAIM):
                raise PermanentError(f"artifact {self.id}: a file may not be named {name} (the store writes it)")
            size = path.stat().st_size
            digest = self.backend.put_file(f"{prefix}/{name}", path)
            files[name] = {"sha256": digest, "bytes": size}
        for key in list(self.backend.list(prefix)):  # files a writer that died before its manifest left behind
            if key[len(prefix) + 1 :] not in files and key != f"{prefix}/{CLAIM}":
                self.backend.delete_prefix(key)
        manifest = {
            "kind": self.kind,
            "id": self.id,
            "parents": self.parents,
            "spec": self.spec,
            "producer": self.producer,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "synthtune_version": __version__,
            "files": files,
            "stats": self.stats,
        }
        text = json.dumps(manifest, indent=2, ensure_ascii=False, default=jsonable) + "\n"
        if not self.backend.put_bytes_if_absent(f"{prefix}/{MANIFEST}", text.encode("utf-8")):
            log.warning("artifact %s: another writer published it first (this writer's claim had gone stale)", self.id)

    def _release(self, prefix: str, owner: str) -> None:
        try:
            with self.backend.open_read(f"{prefix}/{CLAIM}") as f:
                mine = json.loads(f.read() or b"{}").get("owner") == owner
        except (NotFound, ValueError):
            return
        if mine:
            self.backend.delete_prefix(f"{prefix}/{CLAIM}")

    def _wait_for_writer(self, prefix: str) -> None:
        """Wait while another writer holds the claim; returns once it published, gave up, or went quiet too long."""
        claim = f"{prefix}/{CLAIM}"
        last, since = b"", time.monotonic()
        while not self._published(prefix):
            try:
                with self.backend.open_read(claim) as f:
                    current = f.read()
            except NotFound:
                return  # the writer gave up: try to claim again
            if current != last:
                last, since = current, time.monotonic()
            if _dead_here(current) or time.monotonic() - since > stale_claim_s():
                log.warning("artifact %s: the writer holding %s stopped (no heartbeat for %.0f s, or its process is gone); "
                            "taking over", self.id, claim, time.monotonic() - since)
                self.backend.delete_prefix(claim)
                return
            time.sleep(CLAIM_POLL_S)

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.discard()


class Artifact:
    """A complete artifact: its manifest and checked access to its files."""

    def __init__(self, backend: Backend, manifest: dict[str, Any], cache_dir: Path) -> None:
        self.backend, self.manifest = backend, manifest
        self.kind: str = str(manifest["kind"])
        self.id: str = check_artifact_id(str(manifest["id"]))
        self._cache: Path = cache_dir / self.id
        self.ref = ArtifactRef(self.kind, self.id, backend.uri(f"{ARTIFACT_PREFIX}/{self.id}"))

    @classmethod
    def from_manifest(cls, backend: Backend, manifest: Any, cache_dir: Path, expected_id: str) -> Artifact:
        """An Artifact from a parsed manifest, or PermanentError naming what is wrong with it."""
        where = backend.uri(f"{ARTIFACT_PREFIX}/{expected_id}/{MANIFEST}")
        if not isinstance(manifest, dict) or not {"kind", "id", "files"} <= set(manifest):
            raise IntegrityError(f"{where}: not an artifact manifest (needs kind, id and files)")
        if manifest["id"] != expected_id:
            raise IntegrityError(f"{where}: manifest names id {manifest['id']!r}, expected {expected_id!r}")
        files = manifest["files"]
        if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("bytes"), int) for e in files.values()
        ):
            raise IntegrityError(f"{where}: every file entry needs sha256 and bytes")
        return cls(backend, manifest, cache_dir)

    @property
    def parents(self) -> list[str]:
        return list(self.manifest.get("parents", []))

    @property
    def spec(self) -> Any:
        return self.manifest.get("spec")

    @property
    def producer(self) -> str:
        return str(self.manifest.get("producer", ""))

    @property
    def created_at(self) -> str:
        return str(self.manifest.get("created_at", ""))

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest.get("files", {}))

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.manifest.get("stats", {}))

    def local_path(self, name: str) -> Path:
        """Download ``name`` into the local cache (once) and verify its sha256; return the path."""
        entry = self.files.get(name)
        if entry is None:
            raise NotFound(f"artifact {self.id} has no file {name!r} (it has: {', '.join(sorted(self.files)) or 'none'})")
        target = self._cache / check_key(name)
        if target.is_file() and target.stat().st_size == entry["bytes"] and sha256_file(target) == entry["sha256"]:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".dl-")
        try:
            with os.fdopen(fd, "wb") as out, self.backend.open_read(f"{ARTIFACT_PREFIX}/{self.id}/{name}") as src:
                digest = copy_hashing(src, out)
            if digest != entry["sha256"]:
                raise IntegrityError(
                    f"{self.backend.uri(f'{ARTIFACT_PREFIX}/{self.id}/{name}')}: sha256 mismatch "
                    f"(manifest {entry['sha256'][:12]}…, stored {digest[:12]}…): the file was changed or corrupted"
                )
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target

    def download(self, dest: Path | None = None) -> Path:
        """Every file of the artifact in one local folder (the cache unless ``dest`` is given)."""
        for name in self.files:
            p = self.local_path(name)
            if dest is not None:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, dest / name)
        return dest or self._cache

    def read_text(self, name: str) -> str:
        return self.local_path(name).read_text(encoding="utf-8")

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_text(name))

    def iter_jsonl(self, name: str) -> Iterator[dict[str, Any]]:
        with open(self.local_path(name), encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InvalidInput(f"{self.id}/{name}:{line_no}: not valid JSON ({exc.msg})") from None
