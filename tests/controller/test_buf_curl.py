"""A non-Python client: buf curl (Go, from buf-bin) calls the controller on loopback through server
reflection, with the bearer token, and reads the error model docs/api.md describes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synthtune.controller import Executor
from synthtune.controller.service import PipelineServicer
from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2_grpc
from synthtune.rpc.server import ServerOptions, ServiceBinding, build_server
from synthtune.store import open_store

from .fakes import SPEC, make_stages

pytestmark = pytest.mark.integration
TOKEN = "buf-t0ken"
BUF = shutil.which("buf") or str(Path(sys.executable).parent / "buf")


@pytest.fixture
def address(s3_store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    servicer = PipelineServicer(Executor(open_store(s3_store_uri), stages=make_stages(tmp_path / "calls.txt"), backoff_s=0.01))
    running = build_server([ServiceBinding(servicer, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, "synthtune.v1.PipelineService")],
                           ServerOptions(port=0, host="127.0.0.1", token=TOKEN))
    yield f"http://127.0.0.1:{running.port}"
    running.stop(0)
    servicer.executor.shutdown()


def buf_curl(address: str, method: str, body: dict, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    # Reflection needs the token too: buf curl sends it there with --reflect-header.
    args = [BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--data", json.dumps(body),
            "--reflect-header", f"Authorization: Bearer {TOKEN}"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    return subprocess.run([*args, f"{address}/{method}"], capture_output=True, text=True, timeout=60)


def test_buf_curl_submits_watches_and_reads_a_run(address):
    out = buf_curl(address, "synthtune.v1.PipelineService/SubmitRun", {"specYaml": SPEC, "until": "prepare"})
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run"]["runId"]
    watch = buf_curl(address, "synthtune.v1.PipelineService/WatchRun", {"runId": run_id})
    assert watch.returncode == 0, watch.stderr
    events = [json.loads(doc)["event"] for doc in watch.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert events[-1]["type"] == "run_finished" and events[-1]["runState"] == "RUN_STATE_SUCCEEDED"
    got = json.loads(buf_curl(address, "synthtune.v1.PipelineService/GetRun", {"runId": run_id}).stdout)["run"]
    assert got["state"] == "RUN_STATE_SUCCEEDED" and got["stages"][0]["name"] == "prepare"
    page = json.loads(buf_curl(address, "synthtune.v1.PipelineService/ListRuns", {"pageSize": 1}).stdout)
    assert [r["runId"] for r in page["runs"]] == [run_id] and "nextPageToken" not in page


def test_buf_curl_sees_the_documented_status_codes(address):
    missing = buf_curl(address, "synthtune.v1.PipelineService/GetRun", {"runId": "no-such-run"})
    assert missing.returncode != 0
    error = json.loads(missing.stderr)
    assert error["code"] == "not_found" and "no run 'no-such-run'" in error["message"]
    bad = json.loads(buf_curl(address, "synthtune.v1.PipelineService/SubmitRun", {"specYaml": "version: 1\nname: x\n"}).stderr)
    assert bad["code"] == "invalid_argument" and "spec_yaml:1:1: source: required key is missing" in bad["message"]
    token = json.loads(buf_curl(address, "synthtune.v1.PipelineService/ListRuns", {"pageToken": "page-2"}).stderr)
    assert token["code"] == "invalid_argument" and "page_token 'page-2'" in token["message"]
    anonymous = json.loads(buf_curl(address, "synthtune.v1.PipelineService/ListRuns", {}, token=None).stderr)
    assert anonymous["code"] == "unauthenticated"
    wrong = json.loads(buf_curl(address, "synthtune.v1.PipelineService/ListRuns", {}, token="guess").stderr)
    assert wrong["code"] == "unauthenticated" and "bearer token" in wrong["message"]
    health = buf_curl(address, "grpc.health.v1.Health/Check", {"service": "synthtune.v1.PipelineService"})
    assert health.returncode == 0 and json.loads(health.stdout) == {"status": "SERVING"}
