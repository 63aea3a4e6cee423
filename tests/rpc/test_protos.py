"""Protos pass buf lint (STANDARD, and COMMENTS: every service, RPC, message, field and enum value is
documented), carry other languages' package options, and the committed stubs match a fresh generation."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_buf_lint_standard_is_clean():
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    out = subprocess.run([buf, "lint"], cwd=REPO / "protos", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_committed_stubs_are_current(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path / "gen")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    committed = REPO / "services" / "synthtune" / "rpc" / "gen"
    fresh = sorted(p.relative_to(tmp_path / "gen") for p in (tmp_path / "gen").rglob("*") if p.is_file())
    stored = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert fresh == stored, "stub files differ: run `make stubs`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / "gen" / p, committed / p, shallow=False)]
    assert not stale, f"stale stubs {stale}: run `make stubs`"


def test_generated_modules_import_within_the_package():
    committed = REPO / "services" / "synthtune" / "rpc" / "gen"
    for path in committed.rglob("*.py*"):
        if "__pycache__" not in path.parts:
            text = path.read_text()
            assert "from synthtune.v1 import" not in text and "import synthtune.v1" not in text, path


def test_the_contract_rpcs_exist_with_their_shapes():
    from synthtune.rpc.gen.synthtune.v1 import operations_pb2, pipeline_pb2, stages_pb2

    def methods(module, service):
        desc = module.DESCRIPTOR.services_by_name[service]
        return {m.name: m.server_streaming for m in desc.methods}

    assert methods(pipeline_pb2, "PipelineService") == {
        "SubmitRun": False, "GetRun": False, "ListRuns": False, "WatchRun": True, "CancelRun": False}
    assert methods(operations_pb2, "OperationsService") == {
        "GetOperation": False, "WatchOperation": True, "CancelOperation": False}
    for service, rpc in [("DataPrepService", "Prepare"), ("GeneratorService", "Generate"),
                         ("TrainerService", "Train"), ("EvaluatorService", "Evaluate")]:
        assert methods(stages_pb2, service) == {rpc: False}
        response = stages_pb2.DESCRIPTOR.services_by_name[service].methods_by_name[rpc].output_type
        assert response.fields_by_name["operation"].message_type.full_name == "synthtune.v1.Operation"
    # Messages carry references, never bulk data: no bytes fields anywhere.
    for module in (operations_pb2, pipeline_pb2, stages_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            assert all(f.type != f.TYPE_BYTES for f in message.fields), message.full_name


def test_every_proto_carries_the_package_options_other_languages_need():
    import yaml

    from synthtune.rpc.gen.synthtune.v1 import common_pb2, operations_pb2, pipeline_pb2, stages_pb2

    for module in (common_pb2, operations_pb2, pipeline_pb2, stages_pb2):
        options = module.DESCRIPTOR.GetOptions()
        assert options.go_package == "github.com/synthtune/synthtune/gen/go/synthtune/v1;synthtunev1", module.__name__
        assert options.java_package == "io.synthtune.v1" and options.java_multiple_files, module.__name__
        assert options.csharp_namespace == "Synthtune.V1" and options.ruby_package == "Synthtune::V1", module.__name__
    lint = yaml.safe_load((REPO / "protos" / "buf.yaml").read_text())["lint"]["use"]
    assert {"STANDARD", "COMMENTS"} <= set(lint)
    gen = yaml.safe_load((REPO / "protos" / "buf.gen.yaml").read_text())
    assert gen["version"] == "v2"
    plugins = {p.get("remote", p.get("local")): p["out"] for p in gen["plugins"]}
    assert plugins["buf.build/protocolbuffers/go"] == plugins["buf.build/grpc/go"] == "gen/go"
    assert plugins["buf.build/protocolbuffers/java"] == plugins["buf.build/grpc/java"] == "gen/java"
    assert (REPO / "protos" / ".gitignore").read_text().split() == ["gen/"]


def _buf() -> str:
    return shutil.which("buf") or str(Path(sys.executable).parent / "buf")


def test_buf_generate_runs_offline_with_local_plugins(tmp_path):
    """buf.gen.offline.yaml: protoc's built-in python and pyi generators from grpcio-tools, no network.

    Its type stubs equal the committed ones, and its modules hold the same file descriptors once the
    json_name that buf's images add to every field is cleared."""
    import ast
    import importlib
    import re

    from google.protobuf import descriptor_pb2

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run([_buf(), "generate", "--template", "buf.gen.offline.yaml", "-o", str(tmp_path)],
                         cwd=REPO / "protos", capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    fresh, committed = tmp_path / "gen" / "python" / "synthtune" / "v1", REPO / "services" / "synthtune" / "rpc" / "gen" / "synthtune" / "v1"
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in committed.glob("*_pb2.py*"))
    for pyi in fresh.glob("*.pyi"):
        ours = (committed / pyi.name).read_text().replace("from synthtune.rpc.gen.synthtune.v1 import", "from synthtune.v1 import")
        assert pyi.read_text() == ours, pyi.name
    for name in ("common", "operations", "pipeline", "stages"):
        serialized = re.search(r"AddSerializedFile\((b'.*?')\)\n", (fresh / f"{name}_pb2.py").read_text())
        assert serialized, name
        theirs = descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(serialized.group(1)))
        messages = list(theirs.message_type)
        while messages:
            message = messages.pop()
            messages += message.nested_type
            for f in message.field:
                f.ClearField("json_name")
        ours = importlib.import_module(f"synthtune.rpc.gen.synthtune.v1.{name}_pb2").DESCRIPTOR.serialized_pb
        assert theirs == descriptor_pb2.FileDescriptorProto.FromString(ours), name


def test_buf_parses_the_remote_template():
    """buf.gen.yaml's plugins are remote (network): buf reads the template, then stops at the first remote,
    here a closed loopback proxy; a template buf cannot read fails before that, naming the problem."""
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    out = subprocess.run([_buf(), "generate", "--template", "buf.gen.yaml", "-o", "/nonexistent-not-written"],
                         cwd=REPO / "protos", capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0 and "remote is unavailable" in out.stderr, out.stderr
    assert "decode config" not in out.stderr
