"""Clean what a killed writer leaves: artifact files without a manifest, stale commit claims,
local ``synthtune-*`` staging folders and (on S3) incomplete multipart uploads."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.errors import NotFound
from synthtune.store.artifacts import ARTIFACT_PREFIX, CLAIM, MANIFEST, stale_claim_s
from synthtune.store.store import Store


@dataclass
class Garbage:
    """What gc found (and, unless a dry run, removed)."""

    orphan_artifacts: list[str] = field(default_factory=list)
    stale_claims: list[str] = field(default_factory=list)
    staging_dirs: list[str] = field(default_factory=list)
    multipart_uploads: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"artifact files without a manifest: {k}" for k in self.orphan_artifacts]
                + [f"stale commit claim: {k}" for k in self.stale_claims]
                + [f"local staging folder: {d}" for d in self.staging_dirs]
                + [f"incomplete multipart upload: {u}" for u in self.multipart_uploads])


def _claim_age_s(store: Store, key: str) -> float:
    """Seconds since the claim's writer last beat; infinite when unreadable."""
    try:
        with store.backend.open_read(key) as f:
            stamp = dt.datetime.fromisoformat(json.loads(f.read())["time"])
    except (NotFound, ValueError, KeyError, TypeError):
        return float("inf")
    return (dt.datetime.now(dt.UTC) - stamp).total_seconds()


def _artifact_folders(store: Store) -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {}
    for key in store.backend.list(f"{ARTIFACT_PREFIX}/"):
        parts = key.split("/", 2)
        if len(parts) == 3:
            folders.setdefault(parts[1], set()).add(parts[2])
    return folders


def collect(store: Store, dry_run: bool = False, older_than_s: float = 24 * 3600) -> Garbage:
    """Find (and unless ``dry_run`` remove) leftovers; a folder with a live claim is being written and kept."""
    found = Garbage()
    for art_id, names in sorted(_artifact_folders(store).items()):
        prefix = f"{ARTIFACT_PREFIX}/{art_id}"
        live = CLAIM in names and _claim_age_s(store, f"{prefix}/{CLAIM}") <= max(stale_claim_s(), 60.0)
        if MANIFEST in names:
            if CLAIM in names and not live:
                found.stale_claims.append(f"{prefix}/{CLAIM}")
                if not dry_run:
                    store.backend.delete_prefix(f"{prefix}/{CLAIM}")
        elif not live:
            found.orphan_artifacts.append(prefix)
            if not dry_run:
                store.backend.delete_prefix(prefix)
    cutoff = time.time() - older_than_s
    for folder in sorted(Path(tempfile.gettempdir()).glob("synthtune-*")):
        try:
            old = folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff
        except OSError:
            continue
        if old:
            found.staging_dirs.append(str(folder))
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
    found.multipart_uploads = _multipart(store, dry_run, older_than_s)
    return found


def _multipart(store: Store, dry_run: bool, older_than_s: float) -> list[str]:
    """Incomplete multipart uploads under the store's prefix started more than ``older_than_s`` ago (S3 only)."""
    from synthtune.store.s3 import S3Backend

    backend = store.backend
    if not isinstance(backend, S3Backend):
        return []
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_s)
    prefix = f"{backend.prefix}/" if backend.prefix else ""
    stale: list[str] = []
    with backend._errors(""):
        # minio has no public call for these: the client's own request helpers do the listing and aborting.
        uploads = backend.client._list_multipart_uploads(backend.bucket, prefix=prefix, max_uploads=1000).uploads
        for upload in uploads:
            started = upload.initiated_time
            if started is not None and started.tzinfo is None:
                started = started.replace(tzinfo=dt.UTC)
            if upload.upload_id and (started is None or started <= cutoff):
                stale.append(f"s3://{backend.bucket}/{upload.object_name} (upload {upload.upload_id})")
                if not dry_run:
                    backend.client._abort_multipart_upload(backend.bucket, upload.object_name, upload.upload_id)
    return stale
