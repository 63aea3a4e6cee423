"""The artifact store: artifacts, run records, and ``open_store(uri)``."""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from synthtune.errors import InvalidInput, NotFound, PermanentError
from synthtune.store.artifacts import (
    ARTIFACT_PREFIX,
    MANIFEST,
    Artifact,
    ArtifactRef,
    ArtifactWriter,
    IntegrityError,
    artifact_id,
    check_artifact_id,
    jsonable,
)
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

    def _id_of(self, ref: ArtifactRef | str) -> str:
        """The id of an ArtifactRef, a bare id, or this store's URI of an artifact."""
        if isinstance(ref, ArtifactRef):
            return check_artifact_id(ref.id)
        if "://" in ref:
            base = self.backend.uri(ARTIFACT_PREFIX) + "/"
            if not ref.startswith(base):
                raise InvalidInput(f"artifact URI {ref!r} is not in this store ({self.uri})")
            return check_artifact_id(ref[len(base) :].rstrip("/"))
        return check_artifact_id(ref)

    def find(self, art_id: str) -> ArtifactRef | None:
        """The complete artifact with this id, or None (a half-written one is invisible)."""
        art_id = self._id_of(art_id)
        if self.backend.exists(f"{ARTIFACT_PREFIX}/{art_id}/{MANIFEST}"):
            return ArtifactRef(art_id.split("-", 1)[0], art_id, self.backend.uri(f"{ARTIFACT_PREFIX}/{art_id}"))
        return None

    def create(self, kind: str, parents: list[str], spec: Any, producer: str, art_id: str | None = None) -> ArtifactWriter:
        """A writer for a new artifact; its id comes from kind, parents and spec unless given."""
        art_id = check_artifact_id(artifact_id(kind, parents, spec) if art_id is None else art_id)
        return ArtifactWriter(self.backend, kind, art_id, parents, spec, producer)

    def open(self, ref: ArtifactRef | str) -> Artifact:
        """The complete artifact ``ref`` (a ref, an id or its URI); NotFound if it is not (yet) there."""
        art_id = self._id_of(ref)
        key = f"{ARTIFACT_PREFIX}/{art_id}/{MANIFEST}"
        try:
            with self.backend.open_read(key) as f:
                manifest = json.load(f)
        except NotFound:
            raise NotFound(
                f"artifact {art_id} is not in the store {self.uri} "
                "(never written, deleted, or its upload did not finish)"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{self.backend.uri(key)}: manifest is not valid JSON ({exc})") from None
        return Artifact.from_manifest(self.backend, manifest, self.cache_dir, art_id)

    def lineage(self, ref: ArtifactRef | str) -> list[Artifact]:
        """This artifact, then its ancestors breadth-first, each once (the data a result came from)."""
        start = self._id_of(ref)
        order: list[Artifact] = []
        seen = {start}
        queue: deque[tuple[str, str | None]] = deque([(start, None)])
        while queue:
            art_id, child = queue.popleft()
            try:
                art = self.open(art_id)
            except NotFound:
                if child is None:
                    raise
                raise NotFound(f"artifact {art_id}, a parent of {child}, is not in the store {self.uri}") from None
            order.append(art)
            for parent in art.parents:
                if parent not in seen:
                    seen.add(parent)
                    queue.append((parent, art_id))
        return order

    # plain objects (run records, requests) ----------------------------------------------
    def put_json(self, key: str, obj: Any) -> None:
        text = json.dumps(obj, indent=2, ensure_ascii=False, default=jsonable) + "\n"
        self.backend.put_bytes(check_key(key), text.encode("utf-8"))

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

    def delete(self, key: str) -> None:
        """Remove one plain object (a missing one is not an error)."""
        self.backend.delete_prefix(check_key(key))

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under the folder ``prefix`` (``runs/`` lists ``runs/...``), in sorted order."""
        return self.backend.list(prefix)


def open_store(uri: str | None = None, cache_dir: Path | None = None) -> Store:
    """A store from a path, ``file:///abs/path`` or ``s3://bucket/prefix``."""
    uri = uri or os.environ.get("SYNTHTUNE_STORE") or DEFAULT_STORE
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise InvalidInput(f"store URI {uri!r}: control characters are not allowed")
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Store(FileBackend(_local_root(uri, parsed.scheme, parsed.netloc, parsed.path)), cache_dir)
    if parsed.scheme == "s3":
        from synthtune.store.s3 import S3Backend

        if not parsed.netloc:
            raise InvalidInput(f"store URI {uri!r}: an S3 URI needs a bucket, as in s3://bucket/prefix")
        if parsed.query or parsed.fragment or parsed.params:
            raise InvalidInput(f"store URI {uri!r}: an S3 URI takes no '?', '#' or ';' parts")
        prefix = parsed.path.strip("/")
        if prefix:
            try:
                check_key(prefix)
            except InvalidInput as exc:
                raise InvalidInput(f"store URI {uri!r}: bad prefix ({exc})") from None
        return Store(S3Backend.from_env(parsed.netloc, prefix), cache_dir)
    raise InvalidInput(f"store URI {uri!r}: unknown scheme {parsed.scheme!r} (use a path, file:///abs/path or s3://bucket/prefix)")


def _local_root(uri: str, scheme: str, netloc: str, path: str) -> Path:
    """The folder of a path or file:// URI, created if missing; InvalidInput naming the URI otherwise."""
    if scheme == "file" and netloc not in ("", "localhost"):
        raise InvalidInput(f"store URI {uri!r}: file URIs must be file:///absolute/path")
    root = Path(unquote(path) if scheme == "file" else uri).expanduser()
    if root.exists() and not root.is_dir():
        raise InvalidInput(f"store URI {uri!r}: {root} exists and is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermanentError(f"store URI {uri!r}: cannot create {root} ({exc.strerror})") from None
    return root


__all__ = ["Artifact", "ArtifactRef", "ArtifactWriter", "IntegrityError", "NotFound", "Store", "open_store"]
