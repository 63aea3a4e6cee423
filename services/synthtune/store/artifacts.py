"""Artifacts: folders of files plus ``manifest.json``, written last so nothing is half-visible."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune import __version__
from synthtune.errors import InvalidInput, NotFound, PermanentError
from synthtune.store.backend import CHUNK, Backend

ARTIFACT_PREFIX = "artifacts"
KINDS = ("prepared", "synthetic", "adapter", "evaluation", "checkpoint", "request")


@dataclass(frozen=True)
class ArtifactRef:
    kind: str
    id: str
    uri: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "uri": self.uri}


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def artifact_id(kind: str, parents: list[str], config: Any, code_version: str = __version__) -> str:
    """Id from content: same kind, parents, config and code version give the same id (a cache key)."""
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
        self.backend, self.kind, self.id = backend, kind, art_id
        self.parents, self.spec, self.producer = parents, spec, producer
        self.dir = Path(tempfile.mkdtemp(prefix=f"synthtune-{art_id}-"))
        self.stats: dict[str, Any] = {}
        self.committed: ArtifactRef | None = None

    def path(self, name: str) -> Path:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path(name)
        p.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        return p

    def write_jsonl(self, name: str, rows: Any) -> Path:
        p = self.path(name)
        with open(p, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return p

    def commit(self) -> ArtifactRef:
        prefix = f"{ARTIFACT_PREFIX}/{self.id}"
        files = {}
        for path in sorted(p for p in self.dir.rglob("*") if p.is_file()):
            name = path.relative_to(self.dir).as_posix()
            if name == "manifest.json":
                raise PermanentError("an artifact may not contain its own manifest.json")
            digest = self.backend.put_file(f"{prefix}/{name}", path)
            files[name] = {"sha256": digest, "bytes": path.stat().st_size}
        manifest = {
            "kind": self.kind,
            "id": self.id,
            "parents": self.parents,
            "spec": self.spec,
            "producer": self.producer,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "files": files,
            "stats": self.stats,
        }
        self.backend.put_bytes(f"{prefix}/manifest.json", (json.dumps(manifest, indent=2, default=str) + "\n").encode())
        self.committed = ArtifactRef(self.kind, self.id, self.backend.uri(prefix))
        self.discard()
        return self.committed

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
        self.kind: str = manifest["kind"]
        self.id: str = manifest["id"]
        self._cache: Path = cache_dir / str(self.id)
        self.ref = ArtifactRef(self.kind, self.id, backend.uri(f"{ARTIFACT_PREFIX}/{self.id}"))

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
        target = self._cache / name
        if target.is_file() and target.stat().st_size == entry["bytes"] and sha256_file(target) == entry["sha256"]:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".dl-")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, self.backend.open_read(f"{ARTIFACT_PREFIX}/{self.id}/{name}") as src:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != entry["sha256"]:
                raise PermanentError(
                    f"{self.backend.uri(f'{ARTIFACT_PREFIX}/{self.id}/{name}')}: sha256 mismatch "
                    f"(manifest {entry['sha256'][:12]}…, stored {h.hexdigest()[:12]}…): the file was changed or corrupted"
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
