"""Stage servicers: unpack the request, start the stage as an operation, return it. Nothing else."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import grpc

from synthtune.progress import Progress
from synthtune.rpc.gen.synthtune.v1 import operations_pb2_grpc, stages_pb2, stages_pb2_grpc
from synthtune.rpc.operations import OperationManager, OperationsServicer, artifact_ref
from synthtune.rpc.server import ServiceBinding
from synthtune.spec import PipelineSpec, load_spec_text
from synthtune.store import ArtifactRef, Store, open_store

StageFn = Callable[..., ArtifactRef]


def _lazy(module: str) -> StageFn:
    """The real stage's run(), imported on first call so a server loads only what it serves."""

    def call(*args: Any, **kwargs: Any) -> ArtifactRef:
        fn: StageFn = importlib.import_module(module).run
        return fn(*args, **kwargs)

    return call


def _context(request: Any) -> tuple[PipelineSpec, Store]:
    spec = load_spec_text(request.spec_yaml, "request.spec_yaml", base_dir=request.base_dir or None)
    return spec, open_store(request.store_uri or None)


class DataPrepServicer(stages_pb2_grpc.DataPrepServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.dataprep")

    def Prepare(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        spec, store = _context(request)
        op = self.ops.start("prepare", lambda p: self.stage(spec, {}, store, p))
        return stages_pb2.PrepareResponse(operation=op)


class GeneratorServicer(stages_pb2_grpc.GeneratorServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.generator")

    def Generate(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        spec, store = _context(request)
        inputs = {"prepared": artifact_ref(request.prepared)}
        op = self.ops.start(f"generate:{request.method}", lambda p: self.stage(spec, inputs, store, p, method=request.method))
        return stages_pb2.GenerateResponse(operation=op)


class TrainerServicer(stages_pb2_grpc.TrainerServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.trainer")

    def Train(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        spec, store = _context(request)
        inputs = {"synthetic": artifact_ref(request.synthetic), "prepared": artifact_ref(request.prepared)}
        op = self.ops.start(f"train:{request.method}", lambda p: self.stage(spec, inputs, store, p, method=request.method))
        return stages_pb2.TrainResponse(operation=op)


class EvaluatorServicer(stages_pb2_grpc.EvaluatorServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.evaluator")

    def Evaluate(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        spec, store = _context(request)
        inputs: dict[str, ArtifactRef | None] = {"prepared": artifact_ref(request.prepared)}
        inputs.update({f"adapter:{key}": artifact_ref(ref) for key, ref in request.adapters.items()})
        op = self.ops.start("evaluate", lambda p: self.stage(spec, inputs, store, p))
        return stages_pb2.EvaluateResponse(operation=op)


STAGE_SERVICES: dict[str, tuple[type[Any], Callable[[Any, grpc.Server], None], str]] = {
    "dataprep": (DataPrepServicer, stages_pb2_grpc.add_DataPrepServiceServicer_to_server, "synthtune.v1.DataPrepService"),
    "generator": (GeneratorServicer, stages_pb2_grpc.add_GeneratorServiceServicer_to_server, "synthtune.v1.GeneratorService"),
    "trainer": (TrainerServicer, stages_pb2_grpc.add_TrainerServiceServicer_to_server, "synthtune.v1.TrainerService"),
    "evaluator": (EvaluatorServicer, stages_pb2_grpc.add_EvaluatorServiceServicer_to_server, "synthtune.v1.EvaluatorService"),
}


def stage_bindings(names: list[str], ops: OperationManager, stages: dict[str, StageFn] | None = None) -> list[ServiceBinding]:
    """Bindings for the named stage services plus the OperationsService they share."""
    stages = stages or {}
    bindings = []
    for name in names:
        cls, add, full = STAGE_SERVICES[name]
        bindings.append(ServiceBinding(cls(ops, stages.get(name)), add, full))
    bindings.append(ServiceBinding(OperationsServicer(ops), operations_pb2_grpc.add_OperationsServiceServicer_to_server, "synthtune.v1.OperationsService"))
    return bindings


__all__ = ["Progress", "stage_bindings"]
