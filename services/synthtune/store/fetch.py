"""Objects named by URI (``s3://bucket/key``, a folder prefix, or a glob) copied to local files.

Stages read records and base models that users put in S3 themselves (``synthtune upload``,
``synthtune models push``): the pod running the stage lists and downloads them here, into a
cache keyed by each object's version, so a second read of the same object is a local one.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from synthtune.errors import InvalidInput, NotFound
from synthtune.store.backend import Backend, copy_hashing
from synthtune.store.store import default_cache_dir, open_store


@dataclass(frozen=True)
class RemoteObject:
    uri: str  # s3://bucket/key, as the user wrote it or as the listing found it
    key: str  # the key under the backend's root
    backend: Backend


def is_uri(text: str) -> bool:
    return text.startswith("s3://")


def _split(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``s3://bucket``, ``a/b``)."""
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InvalidInput(f"{uri!r}: an S3 URI needs a bucket, as in s3://bucket/key")
    return f"s3://{bucket}", key.strip("/")


def _pattern(key_glob: str) -> re.Pattern[str]:
    """A glob over keys: ``*`` and ``?`` stay within one path segment, ``**/`` spans any number."""
    out, i = "", 0
    while i < len(key_glob):
        if key_glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif key_glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif key_glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif key_glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(key_glob[i]), i + 1
    return re.compile(out + r"\Z")


def expand(uri: str, what: str) -> list[RemoteObject]:
    """The objects ``uri`` names: one object, every object under a folder prefix, or a glob's matches.

    Nothing there raises InvalidInput naming ``what`` and the URI (a user's input, exit code 2).
    """
    root, key = _split(uri)
    backend = open_store(root).backend
    if glob.has_magic(key):
        literal = re.split(r"[*?\[]", key, maxsplit=1)[0]
        folder = literal.rsplit("/", 1)[0] if "/" in literal else ""
        pattern = _pattern(key)
        keys = [k for k in backend.list(folder) if pattern.match(k)]
    elif key and backend.exists(key):
        keys = [key]
    else:
        keys = list(backend.list(key)) if key else list(backend.list(""))
    if not keys:
        raise InvalidInput(f"{what}: {uri!r} does not exist (no object or folder of that name in {root})")
    return [RemoteObject(f"{root}/{k}", k, backend) for k in keys]


def download(obj: RemoteObject, dest: Path) -> str:
    """Stream one object to ``dest`` (atomically); return its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out, obj.backend.open_read(obj.key) as src:
            digest = copy_hashing(src, out)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def cached_copy(obj: RemoteObject, cache: Path | None = None) -> Path:
    """A local copy of ``obj`` under ``<cache>/remote/<bucket>/<key>``, fetched again only when it changed."""
    bucket = obj.uri.removeprefix("s3://").split("/", 1)[0]
    target = (cache or default_cache_dir()) / "remote" / bucket / obj.key
    marker = target.with_name(f".{target.name}.version")
    try:
        version = obj.backend.version(obj.key)
    except NotFound:
        raise InvalidInput(f"{obj.uri!r} does not exist") from None
    if target.is_file() and marker.is_file() and marker.read_text() == version:
        return target
    download(obj, target)
    marker.write_text(version)
    return target
