"""Stage servicers, one per runner stage of the graph: unpack the request, start the stage as an operation, return it."""

from __future__ import annotations

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
from synthtune.spec.graph import BY_KIND, Input
from synthtune.store import ArtifactRef, Store, open_store

StageFn = Callable[..., ArtifactRef]
# Each runner stage of the graph is served as `rpc <Kind>(<Kind>Request) returns (<Kind>Response)` of
# `service <SERVICES[kind]>` in protos/synthtune/v1/stages.proto; a per-method input travels as a map.
SERVICES = {"prepare": "DataPrepService", "generate": "GeneratorService", "train": "TrainerService", "evaluate": "EvaluatorService"}


def rpc_name(kind: str) -> str:
    return kind.capitalize()


def request_field(inp: Input) -> str:
    """The request field an input travels in: its name, or ``<name>s`` (a map by method) for a per-method input."""
    return f"{inp.name}s" if inp.each_method else inp.name


def stub(kind: str, ch: grpc.Channel) -> Any:
    return getattr(stages_pb2_grpc, f"{SERVICES[kind]}Stub")(ch)


def request_message(kind: str, **fields: Any) -> Any:
    return getattr(stages_pb2, f"{rpc_name(kind)}Request")(**fields)


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


class StageServicer:
    """Serves one stage kind: checks the request, starts the stage as an operation, returns it."""

    kind = ""

    def __init__(self, ops: OperationManager, stage: StageFn | None = None) -> None:
        self.ops, self.stage = ops, stage or BY_KIND[self.kind].entry_point()

    def start(self, request: Any, context: grpc.ServicerContext) -> Any:
        st = BY_KIND[self.kind]
        spec, store = _context(request)
        method = _method(spec, request.method) if st.per_method else ""
        inputs: dict[str, ArtifactRef] = {}
        for inp in st.inputs:
            field = request_field(inp)
            if inp.each_method:
                refs = getattr(request, field)
                for key in sorted(refs):
                    inputs[f"{inp.name}:{key}"] = _input(store, f"{field}[{key!r}]", refs[key], inp.kind)
            else:
                inputs[inp.name] = _input(store, field, getattr(request, field), inp.kind)
        extra = {"method": method} if method else {}
        op = _start(self.ops, context, f"{self.kind}:{method}" if method else self.kind, request.run_id,
                    lambda p: self.stage(spec, inputs=inputs, store=store, progress=p, **extra))
        return getattr(stages_pb2, f"{rpc_name(self.kind)}Response")(operation=op)


def _servicer(kind: str) -> type[StageServicer]:
    """StageServicer for ``kind`` on its generated service base, answering its one RPC."""
    base = getattr(stages_pb2_grpc, f"{SERVICES[kind]}Servicer")
    return type(f"{SERVICES[kind].removesuffix('Service')}Servicer", (StageServicer, base), {"kind": kind, rpc_name(kind): StageServicer.start})


# Named by the package that serves it (synthtune.<service>), as `synthtune serve` and the chart name them.
STAGE_SERVICES: dict[str, tuple[type[Any], Callable[[Any, grpc.Server], None], str]] = {
    BY_KIND[kind].service: (_servicer(kind), getattr(stages_pb2_grpc, f"add_{name}Servicer_to_server"), f"synthtune.v1.{name}")
    for kind, name in SERVICES.items()
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


__all__ = ["SERVICES", "STAGE_SERVICES", "StageServicer", "request_field", "request_message", "rpc_name", "stage_bindings", "stub"]
