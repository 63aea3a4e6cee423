"""The artifact store on file:// and on S3 (moto's server, spoken to by the real minio client)."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from pydantic import BaseModel

from store_view import artifact_ids
from synthtune.errors import InvalidInput, NotFound, PermanentError
from synthtune.store import IntegrityError, Store, artifact_id, open_store, sha256_file

pytestmark = pytest.mark.integration


def _write(store: Store, config: object = None, parents: list[str] | None = None, kind: str = "prepared") -> str:
    with store.create(kind, parents or [], config or {"a": 1}, "test") as w:
        w.write_jsonl("train.jsonl", [{"id": "r1"}, {"id": "r2"}])
        w.write_json("stats.json", {"kept": 2})
        w.stats["kept"] = 2
        return w.commit().id


def test_round_trip_with_manifest(store):
    art_id = _write(store, parents=[])
    art = store.open(art_id)
    assert art.kind == "prepared" and art.stats == {"kept": 2} and art.producer == "test"
    assert [r["id"] for r in art.iter_jsonl("train.jsonl")] == ["r1", "r2"]
    assert art.read_json("stats.json") == {"kept": 2}
    manifest = art.manifest
    assert set(manifest) >= {"kind", "id", "parents", "spec", "producer", "created_at", "files", "stats"}
    entry = manifest["files"]["train.jsonl"]
    assert set(entry) == {"sha256", "bytes"}
    assert entry["sha256"] == sha256_file(art.local_path("train.jsonl"))
    assert entry["bytes"] == art.local_path("train.jsonl").stat().st_size
    assert artifact_ids(store, "prepared") == [art_id] and artifact_ids(store, "adapter") == []
    assert art.ref.uri == store.backend.uri(f"artifacts/{art_id}") and art.ref.uri.startswith(store.uri)


def test_nested_file_names_and_download(store, tmp_path):
    with store.create("adapter", [], {"n": 1}, "test") as w:
        w.path("checkpoint/weights.bin").write_bytes(b"\x00\x01" * 1000)
        w.write_json("adapter_config.json", {"r": 16})
        art_id = w.commit().id
    dest = store.open(art_id).download(tmp_path / "out")
    assert (dest / "checkpoint" / "weights.bin").read_bytes() == b"\x00\x01" * 1000
    assert json.loads((dest / "adapter_config.json").read_text()) == {"r": 16}


def test_ids_come_from_content(store):
    assert _write(store) == _write(store)
    assert _write(store, {"a": 2}) != _write(store)
    assert _write(store, parents=["prepared-x"]) != _write(store)
    assert artifact_id("prepared", ["b", "a"], {}) == artifact_id("prepared", ["a", "b"], {})
    assert artifact_id("prepared", [], {}, code_version="9.9") != artifact_id("prepared", [], {})


def test_pydantic_config_ids_hash_the_values_not_the_repr():
    class Cfg(BaseModel):
        r: int = 16
        modules: list[str] = ["q_proj"]

    assert artifact_id("adapter", [], Cfg()) == artifact_id("adapter", [], {"r": 16, "modules": ["q_proj"]})
    assert artifact_id("adapter", [], Cfg(r=8)) != artifact_id("adapter", [], Cfg())


def test_uncommitted_artifact_is_invisible(store):
    with store.create("prepared", [], {"x": 1}, "test") as w:
        w.write_json("stats.json", {})
        art_id = w.id
    assert store.find(art_id) is None
    with pytest.raises(NotFound, match=rf"artifact {art_id} is not in the store .*did not finish"):
        store.open(art_id)


def test_files_without_manifest_stay_invisible(store):
    # What a writer killed after its data but before its manifest leaves behind.
    store.backend.put_bytes("artifacts/prepared-partial/train.jsonl", b"{}\n")
    assert store.find("prepared-partial") is None
    assert "prepared-partial" not in artifact_ids(store)
    with pytest.raises(NotFound):
        store.open("prepared-partial")


def test_an_id_with_a_manifest_is_never_written_again(store):
    with store.create("prepared", [], {"same": 1}, "test") as w:
        w.write_json("old.json", {})
        w.write_json("stats.json", {"v": 1})
        first = w.commit().id
    with store.create("prepared", [], {"same": 1}, "test") as w:
        w.write_json("stats.json", {"v": 2})
        second = w.commit()
    assert second.id == first and second == store.find(first)
    art = store.open(first)
    assert set(art.files) == {"old.json", "stats.json"} and art.read_json("stats.json") == {"v": 1}
    assert list(store.list_keys(f"artifacts/{first}")) == [f"artifacts/{first}/manifest.json", f"artifacts/{first}/old.json",
                                                          f"artifacts/{first}/stats.json"]


def test_two_writers_of_one_id_at_once_leave_one_whole_artifact(store, monkeypatch):
    """Two runs of one pipeline commit the same id at the same moment, with different bytes (timestamps)."""
    barrier = threading.Barrier(2)
    refs: list[object] = []
    put_file = store.backend.put_file
    jitter = random.Random(17)

    def slow_put_file(key, path):  # uploads take varying time, as over a network: the writers overlap
        time.sleep(jitter.uniform(0.0, 0.03))
        return put_file(key, path)

    monkeypatch.setattr(store.backend, "put_file", slow_put_file)

    def write(tag: str) -> None:
        with store.create("synthetic", [], {"same": 2}, "test") as w:
            for i in range(12):
                w.write_jsonl(f"part-{i:02d}.jsonl", [{"writer": tag, "i": i}] * 50)
            barrier.wait()
            refs.append(w.commit())

    threads = [threading.Thread(target=write, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(refs) == 2 and refs[0] == refs[1]
    art = store.open(refs[0].id)  # type: ignore[attr-defined]
    writers = {row["writer"] for name in art.files for row in art.iter_jsonl(name)}  # every file verifies
    assert len(writers) == 1 and len(art.files) == 12
    assert not store.exists(f"artifacts/{art.id}/.commit")


def test_a_writer_that_died_mid_commit_is_taken_over(store, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_COMMIT_STALE_S", "0.5")
    art_id = "prepared-crashed"
    store.backend.put_bytes(f"artifacts/{art_id}/.commit", b'{"owner": "dead"}')
    store.backend.put_bytes(f"artifacts/{art_id}/half.jsonl", b"{}\n")
    with store.create("prepared", [], {}, "test", art_id=art_id) as w:
        w.write_json("stats.json", {"v": 3})
        started = time.monotonic()
        w.commit()
    assert 0.5 <= time.monotonic() - started < 10
    assert set(store.open(art_id).files) == {"stats.json"}
    assert list(store.list_keys(f"artifacts/{art_id}")) == [f"artifacts/{art_id}/manifest.json", f"artifacts/{art_id}/stats.json"]


def test_commit_is_idempotent_and_refuses_a_discarded_writer(store):
    w = store.create("prepared", [], {"c": 1}, "test")
    w.write_json("stats.json", {})
    ref = w.commit()
    assert w.commit() is ref
    w2 = store.create("prepared", [], {"c": 2}, "test")
    w2.discard()
    with pytest.raises(PermanentError, match="discarded"):
        w2.commit()


def test_tampered_file_is_detected(store):
    art_id = _write(store)
    store.backend.put_bytes(f"artifacts/{art_id}/train.jsonl", b'{"id": "evil"}\n')
    with pytest.raises(IntegrityError, match=rf"artifacts/{art_id}/train.jsonl: sha256 mismatch"):
        store.open(art_id).local_path("train.jsonl")


def test_tampered_cache_copy_is_downloaded_again(store):
    art_id = _write(store)
    path = store.open(art_id).local_path("train.jsonl")
    path.write_text('{"id": "stale"}\n')
    assert [r["id"] for r in store.open(art_id).iter_jsonl("train.jsonl")] == ["r1", "r2"]


def test_malformed_manifest_is_named(store):
    store.backend.put_bytes("artifacts/prepared-bad/manifest.json", b"{not json")
    with pytest.raises(IntegrityError, match=r"prepared-bad/manifest.json: manifest is not valid JSON"):
        store.open("prepared-bad")
    store.backend.put_bytes("artifacts/prepared-bad/manifest.json", b'{"kind": "prepared", "id": "other", "files": {}}')
    with pytest.raises(IntegrityError, match="manifest names id 'other'"):
        store.open("prepared-bad")


def test_manifest_file_names_cannot_escape_the_cache(store):
    manifest = {"kind": "prepared", "id": "prepared-evil", "files": {"../../escape": {"sha256": "0" * 64, "bytes": 1}}}
    store.backend.put_bytes("artifacts/prepared-evil/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(InvalidInput, match="'..' segments"):
        store.open("prepared-evil").local_path("../../escape")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/key", "runs/../x", "a\x00b", "a\nb", "a\x7fb", "a//b", "./a", ""])
def test_traversal_absolute_and_control_keys_are_refused(store, key):
    with pytest.raises(InvalidInput):
        store.put_json(key, {})
    with pytest.raises(InvalidInput):
        store.get_text(key)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "-x", "x y", "x\x00"])
def test_bad_artifact_ids_are_refused(store, bad):
    with pytest.raises(InvalidInput, match="artifact id"):
        store.open(bad)
    with pytest.raises(InvalidInput):
        store.create("prepared", [], {}, "test", art_id=bad)


def test_bad_kind_and_file_names_are_refused(store):
    with pytest.raises(InvalidInput, match="artifact kind"):
        store.create("Bad/Kind", [], {}, "test")
    with store.create("prepared", [], {}, "test") as w, pytest.raises(InvalidInput):
        w.path("../outside.txt")


def test_run_records_round_trip(store):
    store.put_json("runs/r1/run.json", {"state": "running"})
    store.put_json("runs/r10/run.json", {"state": "done"})
    store.put_text("runs/r1/report.html", "<p>ü</p>")
    assert store.get_json("runs/r1/run.json") == {"state": "running"}
    assert store.get_text("runs/r1/report.html") == "<p>ü</p>"
    assert store.exists("runs/r1/run.json") and not store.exists("runs/r2/run.json")
    assert list(store.list_keys("runs/")) == ["runs/r1/report.html", "runs/r1/run.json", "runs/r10/run.json"]
    assert list(store.list_keys("runs/r1")) == ["runs/r1/report.html", "runs/r1/run.json"]  # a folder, not a string prefix
    assert list(store.list_keys("nothing/here")) == []
    with pytest.raises(NotFound, match="runs/missing/run.json: no such object"):
        store.get_json("runs/missing/run.json")


def test_missing_file_in_artifact_names_what_exists(store):
    art_id = _write(store)
    with pytest.raises(NotFound, match="stats.json"):
        store.open(art_id).local_path("nope.json")


def test_lineage_walks_parents_breadth_first(store):
    prepared = _write(store, {"p": 1})
    synth_a = _write(store, {"m": "a"}, [prepared], "synthetic")
    synth_b = _write(store, {"m": "b"}, [prepared], "synthetic")
    adapter = _write(store, {"t": 1}, [synth_a], "adapter")
    evaluation = _write(store, {"e": 1}, [prepared, adapter, synth_b], "evaluation")
    ids = [a.id for a in store.lineage(evaluation)]
    assert ids == [evaluation, prepared, adapter, synth_b, synth_a]
    assert [a.id for a in store.lineage(store.find(adapter))] == [adapter, synth_a, prepared]
    store.backend.delete_prefix(f"artifacts/{synth_a}")  # an ancestor lost from the store
    with pytest.raises(NotFound, match=f"artifact {synth_a}, a parent of {adapter}"):
        store.lineage(adapter)


def test_open_accepts_ref_id_and_uri(store):
    art_id = _write(store)
    ref = store.find(art_id)
    assert ref is not None and ref.kind == "prepared"
    assert store.open(ref).id == store.open(art_id).id == store.open(ref.uri).id == art_id
    with pytest.raises(InvalidInput, match="not in this store"):
        store.open("s3://elsewhere/artifacts/" + art_id)


def test_bad_uris_are_clear(tmp_path, monkeypatch):
    with pytest.raises(InvalidInput, match="unknown scheme 'ftp'"):
        open_store("ftp://host/x")
    with pytest.raises(InvalidInput, match="needs a bucket"):
        open_store("s3:///prefix")
    with pytest.raises(InvalidInput, match=r"'s3://bucket/\.\./x': bad prefix"):
        open_store("s3://bucket/../x")
    with pytest.raises(InvalidInput, match="no '\\?'"):
        open_store("s3://bucket/x?versioning=1")
    with pytest.raises(InvalidInput, match="file:///absolute/path"):
        open_store("file://relative/path")
    with pytest.raises(InvalidInput, match="control characters"):
        open_store("s3://bucket/a\nb")
    monkeypatch.delenv("SYNTHTUNE_S3_ENDPOINT", raising=False)
    with pytest.raises(InvalidInput, match=r"s3://bucket/prefix: set SYNTHTUNE_S3_ENDPOINT"):
        open_store("s3://bucket/prefix")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidInput, match="not a folder"):
        open_store(str(f))
    with pytest.raises(InvalidInput, match="not a folder"):
        open_store(f.as_uri())


def test_file_uri_and_plain_path_are_the_same_store(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    art_id = _write(open_store(str(tmp_path / "s")))
    assert open_store((tmp_path / "s").as_uri()).find(art_id) is not None
    manifest = json.loads((tmp_path / "s" / "artifacts" / art_id / "manifest.json").read_text())
    assert manifest["id"] == art_id
    assert not list((tmp_path / "s").rglob(".tmp-*"))  # atomic writes left no temp files


def test_symlinks_cannot_lead_a_file_store_outside_its_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not read")
    store = open_store(str(tmp_path / "store"))
    root = tmp_path / "store"
    (root / "runs").mkdir()
    (root / "runs" / "evil").symlink_to(outside, target_is_directory=True)
    (root / "runs" / "link.txt").symlink_to(outside / "secret.txt")
    (root / "runs" / "ok.txt").write_text("inside")
    for action in (lambda: store.put_text("runs/evil/planted.txt", "x"), lambda: store.get_text("runs/evil/secret.txt"),
                   lambda: store.get_text("runs/link.txt"), lambda: store.exists("runs/evil/secret.txt"),
                   lambda: store.delete("runs/evil")):
        with pytest.raises(InvalidInput, match="outside the store folder"):
            action()
    assert not (outside / "planted.txt").exists() and (outside / "secret.txt").is_file()
    assert list(store.list_keys("runs")) == ["runs/ok.txt"]
