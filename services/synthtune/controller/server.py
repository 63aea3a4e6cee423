"""`synthtune serve`: the controller and/or stage services on one gRPC server."""

from __future__ import annotations

import signal
import threading

from synthtune.controller.executor import Executor
from synthtune.controller.service import PipelineServicer
from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2_grpc
from synthtune.rpc.logs import configure_json_logging
from synthtune.rpc.operations import OperationManager
from synthtune.rpc.server import RunningServer, ServerOptions, ServiceBinding, build_server
from synthtune.rpc.stages import stage_bindings
from synthtune.store import open_store


def start(names: list[str], options: ServerOptions, store_uri: str | None) -> tuple[RunningServer, PipelineServicer | None]:
    bindings: list[ServiceBinding] = []
    pipeline = None
    if "controller" in names:
        pipeline = PipelineServicer(Executor(open_store(store_uri)))
        bindings.append(ServiceBinding(pipeline, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, "synthtune.v1.PipelineService"))
    stages = [n for n in names if n != "controller"]
    if stages:
        bindings += stage_bindings(stages, OperationManager())
    running = build_server(bindings, options)
    if pipeline is not None:
        pipeline.resume_all()  # every unfinished run continues after a restart
    return running, pipeline


def serve_forever(names: list[str], port: int, host: str, store_uri: str | None, insecure: bool, metrics_port: int | None,
                  tls_cert: str | None, tls_key: str | None) -> None:
    configure_json_logging()
    options = ServerOptions(port=port, host=host, insecure=insecure, metrics_port=metrics_port, tls_cert=tls_cert, tls_key=tls_key)
    running, _ = start(names, options, store_uri)
    print(f"serving {', '.join(names)} on {host}:{running.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    running.stop(5.0)
