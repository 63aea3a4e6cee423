"""`synthtune job STAGE PIPELINE --store URI [--run RUN_ID]`: strictly valid Job manifests for kubectl, requests in
the store, and the Job's result read back by `runs show` (through a controller) and the run record."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from synthtune.cli.main import main
from synthtune.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "quickstart" / "pipeline.yaml"
K8S_VERSION = "1.33.0"  # as tests/deploy


def _cli(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _jobs(text: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return docs


@pytest.fixture
def standby_controller(tmp_path):  # type: ignore[no-untyped-def]
    """A controller replica that serves reads but executes nothing (a standby): what `runs show` reaches."""
    from synthtune.controller import Executor
    from synthtune.controller.service import PipelineServicer
    from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2_grpc
    from synthtune.rpc.server import ServiceBinding, build_server
    from synthtune.store import open_store

    servicer = PipelineServicer(Executor(open_store(str(tmp_path / "store"))), 2, leading=False)
    server = build_server([ServiceBinding(servicer, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, "synthtune.v1.PipelineService")],
                          port=0, host="127.0.0.1", insecure=True)
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


def test_job_prints_valid_jobs_whose_result_runs_show_reads_back(tmp_path, capsys, monkeypatch, standby_controller):
    from synthtune.dataprep.job import _prepare
    from synthtune.jobentry import main as job_main
    from synthtune.store import open_store

    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    store = str(tmp_path / "store")
    code, out, err = _cli(capsys, "job", "prepare", str(EXAMPLE), "--store", store, "--secret", "synthtune-s3")
    assert code == 0, err
    (job,) = _jobs(out)
    run_id = out.splitlines()[0].split("run_id=")[1].split()[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    request_uri = container["command"][-1]
    assert container["command"][:4] == ["python3", "-m", "synthtune.dataprep.job", "--request"]
    assert container["image"].startswith("ghcr.io/synthtune/synthtune-generator:")
    assert container["envFrom"] == [{"secretRef": {"name": "synthtune-s3"}}]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]  # prepare: a CPU Job
    assert job["metadata"]["annotations"]["synthtune.io/run-id"] == run_id

    show = _cli(capsys, "runs", "show", run_id, "--controller", standby_controller)
    assert show[0] == 0 and "prepare" in show[1] and "running" in show[1]

    assert job_main("dataprep", _prepare, ["--request", request_uri]) == 0  # what the Job's pod runs

    code, shown, err = _cli(capsys, "runs", "show", run_id, "--controller", standby_controller)
    assert code == 0, err
    assert "succeeded" in shown and "/artifacts/prepared-" in shown
    record = open_store(store).get_json(f"runs/{run_id}/run.json")
    assert record["stages"]["prepare"]["state"] == "succeeded" and record["status"] == "succeeded"

    code, out, err = _cli(capsys, "job", "generate", str(EXAMPLE), "--store", store, "--run", run_id, "--gpus", "1",
                          "--node-selector", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", "--image", "registry.local/gen:1")
    assert code == 0, err
    jobs = _jobs(out)
    methods = [m.key for m in load_spec(EXAMPLE).generate.methods]
    assert len(methods) > 1  # one Job per method
    assert [j["metadata"]["annotations"]["synthtune.io/stage-name"] for j in jobs] == [f"generate:{m}" for m in methods]
    pod = jobs[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1" and pod["containers"][0]["image"] == "registry.local/gen:1"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3" and pod["tolerations"]
    generate_request = open_store(store).get_json(jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1].split(f"{store}/")[-1])
    assert generate_request["inputs"]["prepared"]["id"] == record["stages"]["prepare"]["artifact"]["id"]


def test_job_refuses_bad_input_with_exit_2(tmp_path, capsys):
    store = str(tmp_path / "store")
    code, _, err = _cli(capsys, "job", "train", str(EXAMPLE), "--store", store)
    assert code == 2 and "--run" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\nsource:\n  paths: [a.csv]\ntrain:\n  method: sideways\n")
    code, _, err = _cli(capsys, "job", "train", str(bad), "--store", store, "--run", "r")
    assert code == 2 and "bad.yaml:6:3: train.method" in err
    code, out, _ = _cli(capsys, "job", "prepare", str(EXAMPLE), "--store", store)
    run_id = out.splitlines()[0].split("run_id=")[1].split()[0]
    code, _, err = _cli(capsys, "job", "train", str(EXAMPLE), "--store", store, "--run", run_id)
    assert code == 2 and "needs the output of prepare" in err and "(prepare: running)" in err  # its Job has not finished
    code, _, err = _cli(capsys, "job", "prepare", str(EXAMPLE), "--store", store, "--node-selector", "gpu")
    assert code == 2 and "KEY=VALUE" in err
