"""The artifact store: artifacts, run records, and ``open_store(uri)``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from synthtune.errors import InvalidInput, NotFound
from synthtune.store.artifacts import ARTIFACT_PREFIX, Artifact, ArtifactRef, ArtifactWriter, artifact_id
from synthtune.store.backend import Backend, FileBackend
from synthtune.store.keys import check_key

DEFAULT_STORE = "./synthtune-store"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SYNTHTUNE_CACHE", Path.home() / ".cache" / "synthtune"))


class Store:
    """Artifacts under ``artifacts/<id>/`` and run records under ``runs/<run_id>/``."""

    def __init__(self, backend: Backend, cache_dir: Path | None = None) -> None:
        self.backend = backend
        self.cache_dir = (cache_dir or default_cache_dir()) / "artifacts"

    @property
    def uri(self) -> str:
        return self.backend.uri()

    # artifacts ---------------------------------------------------------------------------
    @staticmethod
    def artifact_id(kind: str, parents: list[str], config: Any) -> str:
        return artifact_id(kind, parents, config)

    def find(self, art_id: str) -> ArtifactRef | None:
        """The complete artifact with this id, or None (a half-written one is invisible)."""
        if self.backend.exists(f"{ARTIFACT_PREFIX}/{check_key(art_id)}/manifest.json"):
            return ArtifactRef(art_id.split("-", 1)[0], art_id, self.backend.uri(f"{ARTIFACT_PREFIX}/{art_id}"))
        return None

    def create(self, kind: str, parents: list[str], spec: Any, producer: str, art_id: str | None = None) -> ArtifactWriter:
        art_id = check_key(art_id or artifact_id(kind, parents, spec))
        return ArtifactWriter(self.backend, kind, art_id, parents, spec, producer)

    def open(self, ref: ArtifactRef | str) -> Artifact:
        art_id = ref.id if isinstance(ref, ArtifactRef) else ref
        key = f"{ARTIFACT_PREFIX}/{check_key(art_id)}/manifest.json"
        with self.backend.open_read(key) as f:
            manifest = json.load(f)
        return Artifact(self.backend, manifest, self.cache_dir)

    def list_artifacts(self, kind: str | None = None) -> Iterator[str]:
        seen = set()
        for key in self.backend.list(f"{ARTIFACT_PREFIX}/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "manifest.json" and parts[1] not in seen:
                seen.add(parts[1])
                if kind is None or parts[1].startswith(kind + "-"):
                    yield parts[1]

    # plain objects (run records, requests) ----------------------------------------------
    def put_json(self, key: str, obj: Any) -> None:
        self.backend.put_bytes(check_key(key), (json.dumps(obj, indent=2, default=str) + "\n").encode())

    def get_json(self, key: str) -> Any:
        with self.backend.open_read(check_key(key)) as f:
            return json.load(f)

    def put_text(self, key: str, text: str) -> None:
        self.backend.put_bytes(check_key(key), text.encode("utf-8"))

    def get_text(self, key: str) -> str:
        with self.backend.open_read(check_key(key)) as f:
            return f.read().decode("utf-8")

    def exists(self, key: str) -> bool:
        return self.backend.exists(check_key(key))

    def list_keys(self, prefix: str) -> Iterator[str]:
        return self.backend.list(prefix)


def open_store(uri: str | None = None, cache_dir: Path | None = None) -> Store:
    """A store from a path, ``file:///abs/path`` or ``s3://bucket/prefix``."""
    uri = uri or os.environ.get("SYNTHTUNE_STORE") or DEFAULT_STORE
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and uri[1:3] == ":\\"):
        path = parsed.path if parsed.scheme == "file" else uri
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise InvalidInput(f"store URI {uri!r}: file URIs must be file:///absolute/path")
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise InvalidInput(f"store URI {uri!r}: {root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        return Store(FileBackend(root), cache_dir)
    if parsed.scheme == "s3":
        from synthtune.store.s3 import S3Backend

        if not parsed.netloc:
            raise InvalidInput(f"store URI {uri!r}: an S3 URI needs a bucket, as in s3://bucket/prefix")
        return Store(S3Backend.from_env(parsed.netloc, parsed.path.strip("/")), cache_dir)
    raise InvalidInput(f"store URI {uri!r}: unknown scheme {parsed.scheme!r} (use a path, file:///abs/path or s3://bucket/prefix)")


__all__ = ["Artifact", "ArtifactRef", "ArtifactWriter", "NotFound", "Store", "open_store"]
