"""Records and base models through the store: upload, s3:// sources, models push, report --out (moto S3 on loopback)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_cli import REPO, cli

from synthtune.errors import InvalidInput
from synthtune.store import open_store

pytestmark = pytest.mark.integration
QUICKSTART = REPO / "examples" / "quickstart"
FIELDS = "{problem: Title, machine: MachineType, cause: ConditionFound, solution: WorkPerformed}"


def s3_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ("SYNTHTUNE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}


def pipeline(tmp_path: Path, paths: list[str]) -> Path:
    p = tmp_path / "pipeline.yaml"
    p.write_text(f"version: 1\nname: s3src\nsource:\n  paths: {json.dumps(paths)}\n  fields: {FIELDS}\n  id_column: TicketID\n")
    return p


def test_upload_prints_paths_that_prepare_reads_from_s3(s3_store_uri, tmp_path):
    env = {**s3_env(), "SYNTHTUNE_CACHE": str(tmp_path / "cache")}
    out = cli("upload", str(QUICKSTART / "work_orders.csv"), "--store", s3_store_uri, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{s3_store_uri}/sources/work_orders.csv"]
    assert "source:\n  paths:\n    - s3://" in out.stderr

    # The pipeline names the object by URI and by glob; the prepare stage reads it from S3, not from this folder.
    for paths in ([out.stdout.strip()], [f"{s3_store_uri}/sources/*.csv"], [f"{s3_store_uri}/sources"]):
        run = cli("prepare", str(pipeline(tmp_path, paths)), "--store", str(tmp_path / "store"), env=env)
        assert run.returncode == 0, run.stderr
        prepared = Path(run.stdout.strip().rsplit("uri=", 1)[1].removeprefix("file://"))
        rows = [json.loads(line) for name in ("train", "validation", "test") for line in (prepared / f"{name}.jsonl").open()]
        assert len(rows) == sum(1 for _ in (QUICKSTART / "work_orders.csv").open()) - 1 - len((prepared / "rejects.jsonl").read_text().splitlines())
        assert {r["source"]["file"] for r in rows} == {f"{s3_store_uri}/sources/work_orders.csv"}


@pytest.mark.parametrize("suffix", ["sources/none.csv", "sources/*.xlsx", "nothing-here/"])
def test_a_missing_s3_source_exits_2_naming_the_uri(s3_store_uri, tmp_path, suffix):
    env = {**s3_env(), "SYNTHTUNE_CACHE": str(tmp_path / "cache")}
    uri = f"{s3_store_uri}/{suffix}"
    run = cli("prepare", str(pipeline(tmp_path, [uri])), "--store", str(tmp_path / "store"), env=env)
    assert run.returncode == 2, run.stderr
    assert uri in run.stderr and "does not exist" in run.stderr and "Traceback" not in run.stderr


def test_an_s3_source_in_a_missing_bucket_exits_2(s3_env, tmp_path):
    run = cli("prepare", str(pipeline(tmp_path, ["s3://no-such-bucket-here/a.csv"])), "--store", str(tmp_path / "store"),
              env={"SYNTHTUNE_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 2 and "no-such-bucket-here" in run.stderr and "does not exist" in run.stderr


def model_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (root / "model.safetensors").write_bytes(os.urandom(300_000))
    (root / "tokenizer.json").write_text("{}")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    return root


def test_models_push_a_folder_then_a_stage_streams_it_by_name_and_by_uri(s3_store_uri, tmp_path, monkeypatch):
    from synthtune.llm.models import check_base_model, resolve_model

    folder = model_folder(tmp_path / "plant-7b")
    out = cli("models", "push", str(folder), "--store", s3_store_uri, env=s3_env())
    assert out.returncode == 0, out.stderr
    uri = out.stdout.strip()
    assert uri == f"{s3_store_uri}/models/plant-7b" and "train.base_model: plant-7b" in out.stderr
    listed = cli("models", "list", "--store", s3_store_uri, env=s3_env())
    assert listed.stdout.startswith("plant-7b\t0.3 MB\t")

    monkeypatch.setenv("SYNTHTUNE_MODEL_CACHE", str(tmp_path / "models"))
    store = open_store(s3_store_uri)
    for name in ("plant-7b", uri):
        local = Path(resolve_model(name, None, store))
        assert local.is_relative_to(tmp_path / "models")
        assert sorted(p.name for p in local.iterdir() if not p.name.startswith(".")) == ["config.json", "model.safetensors", "tokenizer.json"]
        assert (local / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
        assert check_base_model(name, store) == uri


def test_models_pull_streams_a_pushed_model_into_a_folder_checking_sha256(s3_store_uri, tmp_path):
    """What the in-cluster teacher's initContainer runs: `synthtune models pull NAME --out DIR` against S3 (moto on loopback)."""
    folder = model_folder(tmp_path / "teacher-7b")
    assert cli("models", "push", str(folder), "--store", s3_store_uri, env=s3_env()).returncode == 0
    env = {**s3_env(), "SYNTHTUNE_STORE": s3_store_uri}  # the store as the chart's initContainer gets it
    for model, dest in (("teacher-7b", tmp_path / "by-name"), (f"{s3_store_uri}/models/teacher-7b", tmp_path / "by-uri" / "model")):
        out = cli("models", "pull", model, "--out", str(dest), env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(dest) and "pulled model.safetensors (300000 bytes)" in out.stderr
        assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == ["config.json", "model.safetensors", "tokenizer.json"]
        assert (dest / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    again = cli("models", "pull", "teacher-7b", "--out", str(tmp_path / "by-name"), env=env)
    assert again.returncode == 0 and "pulled" not in again.stderr  # the folder already holds this manifest

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    refused = [(("teacher-7b", tmp_path / "busy"), "holds other files"), (("no-such-model", tmp_path / "x"), "'no-such-model' is not in the store")]
    open_store(s3_store_uri).backend.put_file("models/teacher-7b/tokenizer.json", folder / "config.json")  # corrupted in the store
    refused.append((("teacher-7b", tmp_path / "fresh"), "tokenizer.json has sha256"))
    for (model, dest), message in refused:
        out = cli("models", "pull", model, "--out", str(dest), env=env)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine" and not (tmp_path / "fresh").exists()


def test_a_pull_cut_short_is_redone_into_the_same_folder(s3_store_uri, tmp_path, monkeypatch):
    """An initContainer killed mid-download restarts with the same emptyDir: the next pull starts over."""
    from synthtune.llm import model_store

    folder = model_folder(tmp_path / "teacher")
    store = open_store(s3_store_uri)
    model_store.push_model(str(folder), store)
    real, calls = model_store.download, []

    def cut_after_one(obj, dest):  # type: ignore[no-untyped-def]
        calls.append(obj.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(obj, dest)

    monkeypatch.setattr(model_store, "download", cut_after_one)
    with pytest.raises(KeyboardInterrupt):
        model_store.pull_model("teacher", store, tmp_path / "cache" / "model")
    assert any((tmp_path / "cache" / "model").iterdir())
    monkeypatch.setattr(model_store, "download", real)
    _, manifest = model_store.pull_model("teacher", store, tmp_path / "cache" / "model")
    assert (tmp_path / "cache" / "model" / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert manifest["path"] == str(tmp_path / "cache" / "model")


def test_models_push_a_hub_id_from_the_local_hf_cache(s3_store_uri, tmp_path):
    snap = model_folder(tmp_path / "hub" / "models--acme--pump-1b" / "snapshots" / "0123abcd")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0123abcd")
    out = cli("models", "push", "acme/pump-1b", "--store", s3_store_uri, env={**s3_env(), "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{s3_store_uri}/models/acme/pump-1b"
    manifest = open_store(s3_store_uri).get_json("models/acme/pump-1b/model.json")
    assert manifest["source"] == "acme/pump-1b" and set(manifest["files"]) == {"config.json", "model.safetensors", "tokenizer.json"}

    missing = cli("models", "push", "acme/not-downloaded", "--store", s3_store_uri, env={**s3_env(), "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert missing.returncode == 2 and "acme/not-downloaded" in missing.stderr


def test_a_model_neither_stored_nor_allowed_from_the_hub_is_refused_naming_it(s3_store_uri, tmp_path, monkeypatch):
    from synthtune.llm.models import check_base_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    store = open_store(s3_store_uri)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("Qwen/Qwen2.5-7B-Instruct", "plant-7b", f"{s3_store_uri}/models/plant-7b"):
        with pytest.raises(InvalidInput, match=name.replace(".", r"\.")):
            check_base_model(name, store)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert check_base_model("Qwen/Qwen2.5-7B-Instruct", store) == "hub"


def test_report_out_downloads_the_html_and_json(s3_store_uri, tmp_path):
    store = open_store(s3_store_uri)
    store.put_json("runs/r1/run.json", {"run_id": "r1"})
    missing = cli("report", "r1", "--store", s3_store_uri, "--out", str(tmp_path / "out"), env=s3_env())
    assert missing.returncode == 2 and "has no report yet" in missing.stderr
    store.put_text("runs/r1/report.html", "<html>report of r1</html>")
    store.put_json("runs/r1/report.json", {"run_id": "r1"})
    out = cli("report", "r1", "--store", s3_store_uri, "--out", str(tmp_path / "out"), env=s3_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"run_id=r1 uri={tmp_path / 'out' / 'report.html'}"
    assert (tmp_path / "out" / "report.html").read_text() == "<html>report of r1</html>"
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == {"run_id": "r1"}
    unknown = cli("report", "r2", "--store", s3_store_uri, "--out", str(tmp_path / "out"), env=s3_env())
    assert unknown.returncode == 2 and "no run 'r2'" in unknown.stderr
