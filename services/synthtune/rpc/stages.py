"""Stage servicers: unpack the request, start the stage as an operation, return it. Nothing else."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import grpc

from synthtune.errors import Cancelled, InvalidInput, NotFound
from synthtune.progress import Progress
from synthtune.rpc.gen.synthtune.v1 import (
    common_pb2,
    operations_pb2,
    operations_pb2_grpc,
    stages_pb2,
    stages_pb2_grpc,
)
from synthtune.rpc.operations import OperationManager, OperationsServicer
from synthtune.rpc.policy import ServerPolicy
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
    """The request's spec (inline YAML, or a YAML file in the store) and its store, within the server's policy."""
    policy = ServerPolicy.from_env()
    store = open_store(policy.store_uri(request.store_uri))
    if request.spec_yaml:
        text, name = request.spec_yaml, "request.spec_yaml"
    elif request.spec_key:
        if not store.exists(request.spec_key):
            raise NotFound(f"spec_key {request.spec_key!r}: no such file in store {store.uri}")
        text, name = store.get_text(request.spec_key), request.spec_key
    else:
        raise InvalidInput("the request carries no pipeline spec: set spec_yaml (the YAML text) or spec_key (its store key)")
    return policy.check_spec(load_spec_text(text, name, base_dir=request.base_dir or None), name), store


def _input(store: Store, field: str, msg: common_pb2.ArtifactRef, kind: str) -> ArtifactRef:
    """A required input artifact, checked now so a bad reference fails the call, not the operation."""
    if not msg.id:
        raise InvalidInput(f"{field}: a {kind} artifact reference is required (run the earlier stage first)")
    if msg.kind and msg.kind != kind:
        raise InvalidInput(f"{field}: artifact {msg.id} is a {msg.kind!r} artifact, expected {kind!r}")
    ref = store.find(msg.id)
    if ref is None:
        raise NotFound(f"{field}: artifact {msg.id} is not in store {store.uri}")
    return ref


def _method(spec: PipelineSpec, method: str) -> str:
    keys = [m.key for m in spec.generate.methods]
    if method not in keys:
        raise InvalidInput(f"method {method!r} is not in the spec's generate.methods (known: {', '.join(keys) or 'none'})")
    return method


def _start(ops: OperationManager, context: grpc.ServicerContext, stage: str, run_id: str,
           work: Callable[[Progress], ArtifactRef]) -> operations_pb2.Operation:
    # A client whose deadline passed while we checked its request would not learn the
    # operation's name, and would retry: do not start work nobody can follow.
    if not context.is_active():
        raise Cancelled(f"{stage}: the call ended (deadline or cancel) before the operation started")
    return ops.start(stage, work, run_id=run_id)


class DataPrepServicer(stages_pb2_grpc.DataPrepServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.dataprep")

    def Prepare(self, request: stages_pb2.PrepareRequest, context: grpc.ServicerContext) -> stages_pb2.PrepareResponse:  # noqa: N802
        spec, store = _context(request)
        op = _start(self.ops, context, "prepare", request.run_id,
                    lambda p: self.stage(spec, inputs={}, store=store, progress=p))
        return stages_pb2.PrepareResponse(operation=op)


class GeneratorServicer(stages_pb2_grpc.GeneratorServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.generator")

    def Generate(self, request: stages_pb2.GenerateRequest, context: grpc.ServicerContext) -> stages_pb2.GenerateResponse:  # noqa: N802
        spec, store = _context(request)
        method = _method(spec, request.method)
        inputs = {"prepared": _input(store, "prepared", request.prepared, "prepared")}
        op = _start(self.ops, context, f"generate:{method}", request.run_id,
                    lambda p: self.stage(spec, inputs=inputs, store=store, progress=p, method=method))
        return stages_pb2.GenerateResponse(operation=op)


class TrainerServicer(stages_pb2_grpc.TrainerServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.trainer")

    def Train(self, request: stages_pb2.TrainRequest, context: grpc.ServicerContext) -> stages_pb2.TrainResponse:  # noqa: N802
        spec, store = _context(request)
        method = _method(spec, request.method)
        inputs = {"synthetic": _input(store, "synthetic", request.synthetic, "synthetic"),
                  "prepared": _input(store, "prepared", request.prepared, "prepared")}
        op = _start(self.ops, context, f"train:{method}", request.run_id,
                    lambda p: self.stage(spec, inputs=inputs, store=store, progress=p, method=method))
        return stages_pb2.TrainResponse(operation=op)


class EvaluatorServicer(stages_pb2_grpc.EvaluatorServiceServicer):  # type: ignore[misc]
    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or _lazy("synthtune.evaluator")

    def Evaluate(self, request: stages_pb2.EvaluateRequest, context: grpc.ServicerContext) -> stages_pb2.EvaluateResponse:  # noqa: N802
        spec, store = _context(request)
        inputs = {"prepared": _input(store, "prepared", request.prepared, "prepared")}
        for key in sorted(request.adapters):
            inputs[f"adapter:{key}"] = _input(store, f"adapters[{key!r}]", request.adapters[key], "adapter")
        op = _start(self.ops, context, "evaluate", request.run_id,
                    lambda p: self.stage(spec, inputs=inputs, store=store, progress=p))
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
    unknown = sorted(set(names) - set(STAGE_SERVICES))
    if unknown:
        raise InvalidInput(f"unknown stage service(s) {', '.join(unknown)} (known: {', '.join(STAGE_SERVICES)})")
    bindings = []
    for name in names:
        cls, add, full = STAGE_SERVICES[name]
        bindings.append(ServiceBinding(cls(ops, stages.get(name)), add, full))
    bindings.append(ServiceBinding(OperationsServicer(ops), operations_pb2_grpc.add_OperationsServiceServicer_to_server, "synthtune.v1.OperationsService"))
    return bindings


__all__ = ["STAGE_SERVICES", "DataPrepServicer", "EvaluatorServicer", "GeneratorServicer", "TrainerServicer", "stage_bindings"]
