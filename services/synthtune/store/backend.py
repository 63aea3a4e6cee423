"""Object-store backends: a local folder (file://) and S3 (s3://, through the minio client)."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from synthtune.errors import InvalidInput, NotFound
from synthtune.store.keys import check_key

CHUNK = 8 * 1024 * 1024
COPY_CHUNK = 1024 * 1024
COPY_QUEUE = 8  # chunks waiting for the hasher: bounds memory at ~COPY_QUEUE MiB


def copy_hashing(src: BinaryIO, out: BinaryIO) -> str:
    """Copy ``src`` to ``out`` and return its sha256; a second thread hashes, so I/O and hashing overlap."""
    digest = hashlib.sha256()
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=COPY_QUEUE)

    def hash_chunks() -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)  # hashlib releases the GIL on large buffers

    hasher = threading.Thread(target=hash_chunks, name="sha256", daemon=True)
    hasher.start()
    try:
        while chunk := src.read(COPY_CHUNK):
            out.write(chunk)
            chunks.put(chunk)
    finally:
        chunks.put(None)
        hasher.join()
    return digest.hexdigest()


class HashingReader:
    """Wraps a binary file; hashes what is read so upload and sha256 take one pass."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Backend(Protocol):
    """Flat keys under one root; every method streams, none holds a whole object in memory."""

    def uri(self, key: str = "") -> str: ...
    def put_file(self, key: str, path: Path) -> str:
        """Upload ``path`` to ``key``; return its sha256 (computed in the same pass)."""
        ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if no object is there (atomic check and write); False when one was."""
        ...
    def open_read(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def version(self, key: str) -> str:
        """A token that changes when the object's content does (S3: the ETag)."""
        ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def delete_prefix(self, prefix: str) -> None: ...


class FileBackend:
    """A folder on local disk; writes go to a temp file then ``os.replace`` (atomic)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def uri(self, key: str = "") -> str:
        return (self.root / key).as_uri() if key else self.root.as_uri()

    def _inside(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def _path(self, key: str) -> Path:
        """The file for ``key``, with symlinks resolved; InvalidInput when that leaves the store's folder."""
        path = (self.root / check_key(key)).resolve()
        if not self._inside(path):
            raise InvalidInput(f"{self.uri(key)}: resolves to {path}, outside the store folder {self.root} (a symlink?)")
        return path

    def _atomic_write(self, key: str, writer: Callable[[BinaryIO], object]) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                writer(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> str:
        digest = ""

        def copy(out: BinaryIO) -> None:
            nonlocal digest
            with open(path, "rb") as src:
                digest = copy_hashing(src, out)

        self._atomic_write(key, copy)
        return digest

    def put_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda out: out.write(data))

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, target)  # link() fails if the name exists: the atomic "create only"
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"{self.uri(key)}: no such object in the store") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def version(self, key: str) -> str:
        """Size and modification time: changes whenever the file is rewritten."""
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{self.uri(key)}: no such object in the store") from None
        return f"{st.st_size}-{st.st_mtime_ns}"

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under the folder ``prefix``, sorted; files still being written are skipped."""
        base = self._path(prefix.strip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return
        # Sorted as strings, the order S3 lists in, so both backends agree.
        keys = [p.relative_to(self.root).as_posix() for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".tmp-") and self._inside(p.resolve())]
        yield from sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        target = self._path(prefix.rstrip("/"))
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
