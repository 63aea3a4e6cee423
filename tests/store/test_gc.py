"""`synthtune gc`: what SIGKILLed writers leave is found, listed by --dry-run, and removed; live work is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from synthtune.store import open_store
from synthtune.store.gc import collect
from synthtune.store.s3 import S3Backend

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _claim(seconds_ago: float) -> bytes:
    stamp = time.time() - seconds_ago
    return json.dumps({"owner": "x", "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stamp))}).encode()


def test_gc_removes_orphans_and_keeps_live_and_complete_artifacts(store, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    old_staging, new_staging = tmp_path / "tmp" / "synthtune-prepared-x-abc", tmp_path / "tmp" / "synthtune-prepared-y-def"
    for folder in (old_staging, new_staging):
        folder.mkdir()
        (folder / "train.jsonl").write_text("{}\n")
    os.utime(old_staging, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    with store.create("prepared", [], {"kept": 1}, "test") as w:
        w.write_json("stats.json", {})
        kept = w.commit().id
    store.backend.put_bytes(f"artifacts/{kept}/.commit", _claim(3600))  # left by a writer killed after its manifest
    store.backend.put_bytes("artifacts/prepared-dead/train.jsonl", b"{}\n")  # killed mid-upload, no manifest, no claim
    store.backend.put_bytes("artifacts/prepared-alive/.commit", _claim(1))  # being written right now
    store.backend.put_bytes("artifacts/prepared-alive/train.jsonl", b"{}\n")
    multipart = None
    if isinstance(store.backend, S3Backend):
        name = store.backend._name("artifacts/prepared-big/weights.bin")
        multipart = store.backend.client._create_multipart_upload(store.backend.bucket, name, {})

    dry = collect(store, dry_run=True, older_than_s=86400 if multipart is None else 0)
    assert dry.orphan_artifacts == ["artifacts/prepared-dead"] and dry.stale_claims == [f"artifacts/{kept}/.commit"]
    # older_than 0 (to reach the S3 upload just started) takes every staging folder; 24 h only the old one
    assert dry.staging_dirs == ([str(old_staging)] if multipart is None else [str(old_staging), str(new_staging)])
    assert len(dry.multipart_uploads) == (1 if multipart else 0)
    assert store.exists("artifacts/prepared-dead/train.jsonl") and old_staging.is_dir()  # a dry run removes nothing

    done = collect(store, older_than_s=86400 if multipart is None else 0)
    assert done.lines() == dry.lines()
    assert not store.exists("artifacts/prepared-dead/train.jsonl") and not store.exists(f"artifacts/{kept}/.commit")
    assert store.exists("artifacts/prepared-alive/train.jsonl") and store.open(kept).files
    assert not old_staging.exists() and new_staging.is_dir() == (multipart is None)
    if multipart:
        client = store.backend.client
        assert client._list_multipart_uploads(store.backend.bucket, prefix=store.backend.prefix).uploads == []
    assert collect(store, older_than_s=86400).orphan_artifacts == []


def test_gc_command_dry_run_lists_and_exits_0(tmp_path):
    store = open_store(str(tmp_path / "store"))
    store.backend.put_bytes("artifacts/prepared-dead/train.jsonl", b"{}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "services"), TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "synthtune.cli.main", "gc", "--store", str(tmp_path / "store"), "--dry-run"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "would remove artifact files without a manifest: artifacts/prepared-dead" in out.stdout
    assert out.stdout.strip().endswith("gc: would remove 1 item(s)") and store.exists("artifacts/prepared-dead/train.jsonl")
