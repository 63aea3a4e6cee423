"""`synthtune serve`: the controller and/or stage services on one gRPC server."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from synthtune.controller.config import ControllerConfig
from synthtune.controller.executor import Executor
from synthtune.controller.service import PipelineServicer
from synthtune.errors import EXIT_FAILURE
from synthtune.rpc.gen.synthtune.v1 import pipeline_pb2_grpc
from synthtune.rpc.logs import configure_json_logging
from synthtune.rpc.operations import OperationManager
from synthtune.rpc.server import RunningServer, ServerOptions, ServiceBinding, build_server
from synthtune.rpc.stages import stage_bindings
from synthtune.store import open_store

log = logging.getLogger("synthtune.controller")


def _lost_lease() -> None:
    # Runs this replica executes must not write on: the new leader continues them from the
    # store, as after a crash. Leaving at once is the only way to be sure of that.
    log.critical("lost the controller lease: exiting so that the new leader alone continues the runs")
    os._exit(EXIT_FAILURE)


@dataclass
class Controller:
    """A running server and what runs beside it (scheduler, lease campaign), stopped together."""

    server: RunningServer
    pipeline: PipelineServicer | None
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float = 5.0) -> None:
        """Stop serving, leave unfinished runs as they are in the store, then give the lease up (last)."""
        self.server.stop(grace)
        if self.pipeline is not None:
            self.pipeline.executor.shutdown()
            self.pipeline.pool.shutdown(wait=False, cancel_futures=True)
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=grace)


def start(names: list[str], options: ServerOptions, store_uri: str | None, config: ControllerConfig | None = None,
          stage_workers: int = 2, on_lost_lease: Callable[[], None] = _lost_lease) -> Controller:
    config = config or ControllerConfig()
    bindings: list[ServiceBinding] = []
    pipeline = None
    if "controller" in names:
        executor = Executor(open_store(store_uri), config=config)
        pipeline = PipelineServicer(executor, config.max_concurrent_runs, leading=not config.leader.lease)
        bindings.append(ServiceBinding(pipeline, pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, "synthtune.v1.PipelineService"))
    stages = [n for n in names if n != "controller"]
    if stages:
        bindings += stage_bindings(stages, OperationManager(max_concurrent=stage_workers))
    controller = Controller(build_server(bindings, options), pipeline)
    if pipeline is None:
        return controller
    if config.leader.lease:
        from synthtune.controller.kube import api_client
        from synthtune.controller.lease import LeaseElector

        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaseElector(api_client(), config.leader.name, config.lease_namespace(), identity,
                               config.leader.duration_s, config.leader.renew_s)

        def lead() -> None:  # the scheduler picks the runs up at its next pass; the campaign thread must stay free to renew
            pipeline.leading.set()

        campaign = threading.Thread(target=elector.run, args=(controller.stop_event, lead, on_lost_lease), name="lease", daemon=True)
        controller.threads.append(campaign)
        campaign.start()
    else:
        pipeline.resume_all()  # every unfinished run continues after a restart
    scheduler = threading.Thread(target=pipeline.schedule_forever, args=(controller.stop_event, config.poll_s), name="scheduler", daemon=True)
    controller.threads.append(scheduler)
    scheduler.start()
    return controller


def serve_forever(names: list[str], options: ServerOptions, store_uri: str | None, config: ControllerConfig, stage_workers: int) -> None:
    configure_json_logging()
    controller = start(names, options, store_uri, config, stage_workers)
    print(f"serving {', '.join(names)} on {options.host}:{controller.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    controller.stop(5.0)
