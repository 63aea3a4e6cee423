"""The artifact store on file:// and on S3 (moto's server, spoken to by the real minio client)."""

from __future__ import annotations

import json

import pytest

from synthtune.errors import InvalidInput, NotFound, PermanentError
from synthtune.store import open_store

pytestmark = pytest.mark.integration


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    if request.param == "file":
        return open_store(str(tmp_path / "store"))
    return open_store(request.getfixturevalue("s3_store_uri"))


def _write(store, config=None):
    with store.create("prepared", [], config or {"a": 1}, "test") as w:
        w.write_jsonl("train.jsonl", [{"id": "r1"}, {"id": "r2"}])
        w.write_json("stats.json", {"kept": 2})
        w.stats["kept"] = 2
        return w.commit()


def test_round_trip_with_manifest(store):
    ref = _write(store)
    art = store.open(ref)
    assert art.kind == "prepared" and art.stats == {"kept": 2}
    assert [r["id"] for r in art.iter_jsonl("train.jsonl")] == ["r1", "r2"]
    manifest = art.manifest
    assert set(manifest) >= {"kind", "id", "parents", "spec", "producer", "created_at", "files", "stats"}
    assert set(manifest["files"]["train.jsonl"]) == {"sha256", "bytes"}
    assert list(store.list_artifacts("prepared")) == [ref.id]


def test_ids_come_from_content(store):
    assert _write(store).id == _write(store).id
    assert _write(store, {"a": 2}).id != _write(store).id


def test_uncommitted_artifact_is_invisible(store):
    with store.create("prepared", [], {"x": 1}, "test") as w:
        w.write_json("stats.json", {})
        art_id = w.id
    assert store.find(art_id) is None
    with pytest.raises(NotFound):
        store.open(art_id)


def test_tampered_file_is_detected(store):
    ref = _write(store)
    store.backend.put_bytes(f"artifacts/{ref.id}/train.jsonl", b'{"id": "evil"}\n')
    with pytest.raises(PermanentError, match="train.jsonl: sha256 mismatch"):
        store.open(ref).local_path("train.jsonl")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/key", "runs/../x", "a\x00b", "a\nb", "a//b", ""])
def test_traversal_and_control_keys_are_refused(store, key):
    with pytest.raises(InvalidInput):
        store.put_json(key, {})


def test_run_records_round_trip(store):
    store.put_json("runs/r1/run.json", {"state": "running"})
    assert store.get_json("runs/r1/run.json") == {"state": "running"}
    assert list(store.list_keys("runs/")) == ["runs/r1/run.json"]
    with pytest.raises(NotFound):
        store.get_json("runs/missing/run.json")


def test_missing_file_in_artifact_names_what_exists(store):
    ref = _write(store)
    with pytest.raises(NotFound, match="stats.json"):
        store.open(ref).local_path("nope.json")


def test_bad_uris_are_clear(tmp_path, monkeypatch):
    with pytest.raises(InvalidInput, match="unknown scheme"):
        open_store("ftp://host/x")
    with pytest.raises(InvalidInput, match="needs a bucket"):
        open_store("s3:///prefix")
    monkeypatch.delenv("SYNTHTUNE_S3_ENDPOINT", raising=False)
    with pytest.raises(InvalidInput, match="SYNTHTUNE_S3_ENDPOINT"):
        open_store("s3://bucket/prefix")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidInput, match="not a folder"):
        open_store(str(f))


def test_missing_bucket_and_unreachable_endpoint(s3_env, monkeypatch):
    from synthtune.errors import RetryableError

    with pytest.raises(InvalidInput, match="does not exist"):
        open_store("s3://no-such-bucket-here/x")
    monkeypatch.setenv("SYNTHTUNE_S3_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(RetryableError, match="cannot reach"):
        open_store("s3://bucket/x")


def test_manifest_is_valid_json_on_disk(tmp_path):
    store = open_store(str(tmp_path / "s"))
    ref = _write(store)
    manifest = json.loads((tmp_path / "s" / "artifacts" / ref.id / "manifest.json").read_text())
    assert manifest["id"] == ref.id
