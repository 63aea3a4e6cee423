"""The controller: durable pipeline runs over the stage graph, in process, via gRPC or Kubernetes Jobs."""

from synthtune.controller.executor import Executor
from synthtune.controller.runs import RunBook, RunRecord, StageRecord

__all__ = ["Executor", "RunBook", "RunRecord", "StageRecord"]
