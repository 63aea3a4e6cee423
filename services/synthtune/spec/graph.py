"""The stage graph of a run, declared once: stages, what each reads and makes, per-method fan-out, the report step.

The executor, the run records, the gRPC runner and servicers, the Kubernetes Jobs and the CLI
all read this table. Adding a stage is one ``Stage`` entry here plus its package (a ``run()``
and a ``job`` entry point) and its RPC.

A stage *kind* (``train``) becomes one stage *name* per run (``train``) or, with
``per_method``, one per generation method (``train:record_qa``, ``train:persona``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


@dataclass(frozen=True)
class Input:
    """One input of a stage: the artifact that stage ``source`` made, of artifact kind ``kind``.

    ``same_method``: from the source stage of this stage's own method. ``each_method``: one input
    per method, named ``<name>:<method>``, from every source stage that made an artifact."""

    name: str
    source: str
    kind: str
    same_method: bool = False
    each_method: bool = False


@dataclass(frozen=True)
class Stage:
    kind: str  # "prepare"; with per_method the stage names are "<kind>:<method>"
    service: str  # the package and its gRPC service / Job image: synthtune.<service>
    output: str | None  # the artifact kind it makes (None: it writes files of the run)
    inputs: tuple[Input, ...] = ()
    per_method: bool = False
    until: str = ""  # the --until step that still runs it (default: its own kind)
    entry: str = "run"  # the function of synthtune.<service> (or of ``module``) the controller calls
    module: str = ""  # the module of ``entry`` when it is not the package itself
    in_controller: bool = False  # runs in the controller, never on a runner (no GPU, no service)

    @property
    def step(self) -> str:
        return self.until or self.kind

    @property
    def import_path(self) -> str:
        return self.module or f"synthtune.{self.service}"

    def entry_point(self) -> Callable[..., Any]:
        """The stage's function, imported on first call (a process loads only the stages it runs)."""

        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(self.import_path), self.entry)(*args, **kwargs)

        return call


PREPARED = Input("prepared", "prepare", "prepared")
STAGES: tuple[Stage, ...] = (
    Stage("prepare", "dataprep", "prepared"),
    Stage("generate", "generator", "synthetic", (PREPARED,), per_method=True),
    Stage("train", "trainer", "adapter", (PREPARED, Input("synthetic", "generate", "synthetic", same_method=True)), per_method=True),
    Stage("evaluate", "evaluator", "evaluation", (PREPARED, Input("adapter", "train", "adapter", each_method=True))),
    # The report describes the finished run; it reads the run's outcome (ReportInput), not an artifact.
    Stage("report", "evaluator", None, (Input("evaluation", "evaluate", "evaluation"),), until="evaluate",
          entry="write_report", module="synthtune.evaluator.report", in_controller=True),
)
BY_KIND = {s.kind: s for s in STAGES}
RUNNER_KINDS = tuple(s.kind for s in STAGES if not s.in_controller)  # stages a runner executes
STEPS = tuple(dict.fromkeys(s.step for s in STAGES))  # what --until and the CLI's stage commands take


def kind_of(name: str) -> str:
    return name.partition(":")[0]


def method_of(name: str) -> str:
    return name.partition(":")[2]


def stage(name: str) -> Stage:
    return BY_KIND[kind_of(name)]


def stage_names(method_keys: list[str], until: str | None = None) -> list[str]:
    """Every stage of a run in execution order, cut after step ``until``."""
    if until is not None and until not in STEPS:
        raise ValueError(f"until {until!r}: choose {', '.join(STEPS)}")
    names: list[str] = []
    for step in STEPS:
        for s in STAGES:
            if s.step == step:
                names += [f"{s.kind}:{k}" for k in method_keys] if s.per_method else [s.kind]
        if until == step:
            break
    return names


def _sources(name: str, inp: Input, names: list[str]) -> list[str]:
    if inp.each_method:
        return [n for n in names if kind_of(n) == inp.source]
    return [f"{inp.source}:{method_of(name)}" if inp.same_method else inp.source]


def dependencies(name: str, names: list[str]) -> list[str]:
    """The stages ``name`` reads from, among the run's ``names``."""
    deps = [d for inp in stage(name).inputs for d in _sources(name, inp, names)]
    return [d for d in dict.fromkeys(deps) if d in names]


def inputs_for(name: str, names: list[str], artifact: Mapping[str, T | None]) -> dict[str, T | None]:
    """The inputs of stage ``name`` by input name, from ``artifact`` (stage name -> what it made, or None).

    A per-method input appears only for the methods whose stage made something (a skipped one did not)."""
    inputs: dict[str, T | None] = {}
    for inp in stage(name).inputs:
        for source in _sources(name, inp, names):
            if inp.each_method:
                if artifact.get(source) is not None:
                    inputs[f"{inp.name}:{method_of(source)}"] = artifact[source]
            else:
                inputs[inp.name] = artifact.get(source)
    return inputs


class MethodOutcome(BaseModel):
    """What one generation method got to: its artifacts, and the first stage that stopped it."""

    synthetic: str | None = Field(default=None, description="artifact id of its synthetic data")
    adapter: str | None = Field(default=None, description="artifact id of its adapter")
    stopped: str = Field(default="", description="'<stage>: <state>: <message>' of the stage that stopped it, if one did")


class ReportInput(BaseModel):
    """All the report step reads of a run (the controller builds it from the run record)."""

    run_id: str
    name: str
    status: str
    prepared: str | None = Field(default=None, description="artifact id of the prepared data")
    evaluation: str | None = Field(default=None, description="artifact id of the evaluation")
    methods: dict[str, MethodOutcome] = Field(default_factory=dict)
    data_destinations: list[dict[str, Any]] = Field(default_factory=list, description="where the run sent record text (spec.dataflow)")


__all__ = ["BY_KIND", "RUNNER_KINDS", "STAGES", "STEPS", "Input", "MethodOutcome", "ReportInput", "Stage",
           "dependencies", "inputs_for", "kind_of", "method_of", "stage", "stage_names"]
