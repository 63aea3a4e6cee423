"""`python -m synthtune.trainer.job --request URI`: the training Job's exit codes and the result beside its request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from trainer_helpers import OVERFIT

from store_view import artifact_ids
from synthtune.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RETRYABLE, RetryableError
from synthtune.store.requests import write_request

REPO = Path(__file__).resolve().parents[2]


def _synthetic(store, rows):
    with store.create("synthetic", [], {"rows": rows}, "test") as w:
        w.write_jsonl("data.jsonl", rows)
        return w.commit()


def _request(store, model: str, rows=OVERFIT, name: str = "train-1", **extra) -> str:
    spec = ("version: 1\nname: t\nsource: {paths: [a.csv]}\n"
            f"train: {{base_model: {model}, method: lora, max_steps: 2, batch_size: 2, warmup_steps: 0, max_seq_len: 96, "
            "lora: {target_modules: [q_proj, v_proj]}, scaling: {use_ray: false}}\n")
    ref = _synthetic(store, rows)
    return write_request(store, "train", {"spec_yaml": spec, "inputs": {"synthetic": ref.to_dict()}, "method": "record_qa", **extra}, name)


def _job(uri: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "services"), SYNTHTUNE_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "synthtune.trainer.job", "--request", uri], env=env, capture_output=True, text=True, timeout=300)


def test_job_trains_and_writes_its_result_beside_the_request(tmp_path, file_store, tiny_model):
    uri = _request(file_store, str(tiny_model))
    out = _job(uri, tmp_path)
    assert out.returncode == EXIT_OK, out.stderr[-3000:]
    outcome = file_store.get_json("requests/train-1.result.json")
    ref = outcome["result"]
    assert ref["kind"] == "adapter" and file_store.find(ref["id"]) is not None
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"result": ref}
    assert file_store.open(ref["id"]).read_json("training_log.json")["steps"] == 2


def test_job_exits_2_on_a_bad_request(tmp_path, file_store):
    uri = _request(file_store, str(tmp_path / "no-such-model"), name="bad-model")
    out = _job(uri, tmp_path)
    assert out.returncode == EXIT_BAD_INPUT, out.stderr[-3000:]
    assert "bad request" in out.stderr and "no-such-model" in out.stderr
    assert file_store.get_json("requests/bad-model.result.json")["error_kind"] == "not_found"
    file_store.put_json("requests/not-a-request.json", {"hello": 1})
    out = _job(f"{file_store.uri}/requests/not-a-request.json", tmp_path)
    assert out.returncode == EXIT_BAD_INPUT and "not a synthtune job request" in out.stderr
    # (jobentry writes no result for a request it cannot read: it has no store yet at that point)
    assert artifact_ids(file_store, "adapter") == []


def test_job_exits_75_on_a_retryable_fault(tmp_path, file_store, monkeypatch, capsys):
    import synthtune.trainer
    from synthtune.jobentry import main
    from synthtune.trainer.job import _train

    def flaky(*a, **kw):
        raise RetryableError("S3 answered 503 Slow Down")

    monkeypatch.setattr(synthtune.trainer, "run", flaky)
    uri = _request(file_store, str(tmp_path / "unused"), name="flaky")
    assert main("trainer", _train, ["--request", uri]) == EXIT_RETRYABLE
    assert file_store.get_json("requests/flaky.result.json") == {"error": "S3 answered 503 Slow Down", "error_kind": "retryable",
                                                                 "exit_code": EXIT_RETRYABLE}
    assert "retryable: S3 answered 503 Slow Down" in capsys.readouterr().err


def test_job_reports_a_skipped_stage_as_skipped(tmp_path, file_store, tiny_model):
    from synthtune.jobentry import main
    from synthtune.trainer.job import _train

    uri = _request(file_store, str(tiny_model), rows=[], name="empty")
    code = main("trainer", _train, ["--request", uri])
    assert file_store.get_json("requests/empty.result.json").get("error_kind") == "skipped" and code == EXIT_OK


def test_an_unreadable_request_still_gets_its_outcome_written(file_store, capsys):
    from synthtune.jobentry import main
    from synthtune.trainer.job import _train

    uri = f"{file_store.uri}/requests/never-written.json"
    assert main("trainer", _train, ["--request", uri]) == EXIT_BAD_INPUT
    outcome = file_store.get_json("requests/never-written.result.json")
    assert outcome["error_kind"] == "not_found" and outcome["exit_code"] == EXIT_BAD_INPUT
    assert "never-written.json" in outcome["error"]
