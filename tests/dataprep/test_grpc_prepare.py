"""DataPrepService.Prepare over real gRPC on loopback, writing to an S3 store on moto."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthtune.rpc.client import channel
from synthtune.rpc.gen.synthtune.v1 import operations_pb2, operations_pb2_grpc, stages_pb2, stages_pb2_grpc
from synthtune.rpc.operations import OperationManager
from synthtune.rpc.server import ServerOptions, build_server
from synthtune.rpc.stages import stage_bindings
from synthtune.store import open_store

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_prepare_over_grpc_writes_the_artifact_to_s3(s3_store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    ops = OperationManager()
    server = build_server(stage_bindings(["dataprep"], ops), ServerOptions(port=0, host="127.0.0.1", token="tok"))
    try:
        ch = channel(f"127.0.0.1:{server.port}", token="tok")
        example = REPO / "examples" / "quickstart"
        reply = stages_pb2_grpc.DataPrepServiceStub(ch).Prepare(stages_pb2.PrepareRequest(
            spec_yaml=(example / "pipeline.yaml").read_text(), store_uri=s3_store_uri, base_dir=str(example)), timeout=30)
        updates = list(operations_pb2_grpc.OperationsServiceStub(ch).WatchOperation(
            operations_pb2.WatchOperationRequest(name=reply.operation.name), timeout=120))
        final = updates[-1].operation
        assert final.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.error.message
        assert final.result.uri.startswith(s3_store_uri + "/artifacts/prepared-")
        art = open_store(s3_store_uri).open(final.result.id)
        assert {"train.jsonl", "validation.jsonl", "test.jsonl", "rejects.jsonl", "stats.json"} <= set(art.files)
        stats = art.read_json("stats.json")
        assert stats["counts"]["kept"] + stats["counts"]["rejected"] == stats["counts"]["input"]
    finally:
        server.stop(0)
        ops.shutdown()
