"""The CLI as users install it: a wheel whose core dependencies (no torch, no stage extras) run every
client command. A guard refuses, in the CLI's process, any import outside the core dependencies'
distributions, so a stray top-level `import torch` fails here."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from synthtune.controller import Executor
from synthtune.controller.service import PipelineServicer
from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2_grpc
from synthtune.rpc.server import ServerOptions, ServiceBinding, build_server
from synthtune.store import open_store

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"

GUARD = r"""
import importlib.abc, sys
ALLOWED = set(sys.argv[1].split(","))
class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in ALLOWED and top not in sys.stdlib_module_names and not top.startswith("_sysconfigdata"):
            raise ImportError(f"client command imported {name!r}, which the core dependencies do not provide")
        return None
sys.meta_path.insert(0, Guard())
from synthtune.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def core_modules() -> set[str]:
    """Top-level modules of the core dependencies of pyproject.toml and everything they require."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = {**default_environment(), "extra": ""}
    todo, seen = [Requirement(d) for d in deps], set()
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen or (req.marker and not req.marker.evaluate(env)):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in md.requires(req.name) or []]
    return {mod for mod, dists in md.packages_distributions().items()
            if any(re.sub(r"[-_.]+", "-", d).lower() in seen for d in dists)} | {"synthtune", "_cffi_backend"}


def client(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "services"), **(env or {})}
    allowed = ",".join(sorted(core_modules()))
    return subprocess.run([sys.executable, "-c", GUARD, allowed, *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_core_dependencies_leave_out_torch_and_the_stage_extras():
    modules = core_modules()
    assert {"grpc", "minio", "pydantic", "typer"} <= modules
    assert not modules & {"torch", "transformers", "numpy", "pyarrow", "openai", "kubernetes", "matplotlib"}


def test_the_guard_catches_a_heavy_import():
    out = subprocess.run([sys.executable, "-c", GUARD, "synthtune", "--version"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "services")}, timeout=60)
    assert out.returncode != 0 and "core dependencies do not provide" in out.stderr


@pytest.mark.integration
def test_client_commands_run_on_the_core_dependencies(s3_store_uri, tmp_path, monkeypatch):
    env = {k: os.environ[k] for k in ("SYNTHTUNE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    for args in (["--version"], ["--help"], ["validate", str(QUICKSTART / "pipeline.yaml")],
                 ["upload", str(QUICKSTART / "work_orders.csv"), "--store", s3_store_uri],
                 ["models", "list", "--store", s3_store_uri]):
        out = client(*args, env=env)
        assert out.returncode == 0, (args, out.stderr)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert client("models", "push", str(model), "--store", s3_store_uri, env=env).returncode == 0
    pulled = client("models", "pull", "m", "--out", str(tmp_path / "pulled"), "--store", s3_store_uri, env=env)
    assert pulled.returncode == 0 and (tmp_path / "pulled" / "config.json").read_text() == "{}", pulled.stderr
    store = open_store(s3_store_uri)
    store.put_json("runs/r1/run.json", {"run_id": "r1"})
    store.put_text("runs/r1/report.html", "<html></html>")
    out = client("report", "r1", "--store", s3_store_uri, "--out", str(tmp_path / "report"), env=env)
    assert out.returncode == 0 and (tmp_path / "report" / "report.html").is_file(), out.stderr


@pytest.mark.integration
def test_submit_and_runs_run_on_the_core_dependencies(s3_store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    servicer = PipelineServicer(Executor(open_store(s3_store_uri)))
    running = build_server([ServiceBinding(servicer, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, "synthtune.v1.PipelineService")],
                           ServerOptions(port=0, host="127.0.0.1", token="tok"))
    try:
        address, env = f"127.0.0.1:{running.port}", {"SYNTHTUNE_AUTH_TOKEN": "tok"}
        out = client("submit", str(QUICKSTART / "pipeline.yaml"), "--controller", address, "--until", "prepare", env=env)
        assert out.returncode == 0, out.stderr
        run_id = out.stdout.strip().split()[0].removeprefix("run_id=")
        watch = client("runs", "watch", run_id, "--controller", address, env=env)
        assert watch.returncode == 0, watch.stderr
        assert run_id in client("runs", "list", "--controller", address, env=env).stdout
        assert "prepare" in client("runs", "show", run_id, "--controller", address, env=env).stdout
    finally:
        running.stop(0)
        servicer.executor.shutdown()


def build_wheel(tmp_path: Path) -> Path:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("synthtune-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_declares_only_the_core_as_required(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
        names = z.namelist()
    required = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert required and not [r for r in required if re.match(r"(torch|transformers|peft|trl|vllm|numpy|kubernetes)\b", r)]
    assert "synthtune = synthtune.cli.main:entry" in entry
    assert "synthtune/cli/storecmds.py" in names and "synthtune/rpc/gen/synthtune/v1/pipeline_pb2.py" in names
