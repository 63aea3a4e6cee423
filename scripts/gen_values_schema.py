"""Write helm/synthtune/values.schema.json from values.yaml: types inferred, unknown keys refused.

Kubernetes-shaped values (resources, tolerations, ...) and enumerations get hand-written shapes
below; `pipelineDefaults` is checked against the pipeline spec's own schema
(schemas/pipeline.schema.json). Run after changing values.yaml or the spec:
`python scripts/gen_values_schema.py`; tests/deploy checks the file is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "synthtune"
PIPELINE_SCHEMA = REPO / "schemas" / "pipeline.schema.json"

STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
QUANTITIES = {"type": "object", "additionalProperties": {"type": ["string", "integer", "number"]}}
RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"requests": QUANTITIES, "limits": QUANTITIES},
}
TOLERATIONS = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "key": {"type": "string"},
            "operator": {"enum": ["Exists", "Equal"]},
            "value": {"type": "string"},
            "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
            "tolerationSeconds": {"type": "integer"},
        },
    },
}
RUNNER = {"enum": ["inprocess", "grpc", "kubernetes", "rayjob"]}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
AT_LEAST_ONE = {"type": "integer", "minimum": 1}
PULL_POLICY = {"enum": ["Always", "IfNotPresent", "Never"]}
STRINGS = {"type": "array", "items": {"type": "string"}}
# Kubernetes validates these itself; the chart's tests validate the defaults strictly.
SECURITY = {"type": "object"}

OBJECTS = {"type": "array", "items": {"type": "object"}}


def named_objects(*required: str) -> dict[str, Any]:
    """A list of Kubernetes objects (EnvVar, Volume, VolumeMount) that must carry ``required`` keys."""
    return {"type": "array", "items": {"type": "object", "required": list(required),
                                       "properties": {k: {"type": "string"} for k in required}}}


# Shapes by key name anywhere in the tree, then by full dotted path (which wins).
BY_KEY: dict[str, dict[str, Any]] = {
    "resources": RESOURCES,
    "nodeSelector": STRING_MAP,
    "tolerations": TOLERATIONS,
    "commonLabels": STRING_MAP,
    "podAnnotations": STRING_MAP,
    "podLabels": STRING_MAP,
    "affinity": SECURITY,
    "topologySpreadConstraints": OBJECTS,
    "extraEnv": named_objects("name"),
    "extraVolumes": named_objects("name"),
    "extraVolumeMounts": named_objects("name", "mountPath"),
    "podSecurityContext": SECURITY,
    "securityContext": SECURITY,
    "pullSecrets": STRINGS,
    "extraArgs": STRINGS,
}
BY_PATH: dict[str, dict[str, Any]] = {
    "image.pullPolicy": PULL_POLICY,
    "ports.grpc": PORT,
    "ports.metrics": PORT,
    "controller.replicas": AT_LEAST_ONE,
    "controller.maxConcurrentRuns": AT_LEAST_ONE,
    "controller.maxParallelStages": AT_LEAST_ONE,
    "controller.retryMaxAttempts": AT_LEAST_ONE,
    "runners.prepare": RUNNER,
    "runners.generate": RUNNER,
    "runners.train": RUNNER,
    "runners.evaluate": RUNNER,
    "gpuJobs.activeDeadlineSeconds": AT_LEAST_ONE,
    "gpuJobs.scheduleTimeoutSeconds": AT_LEAST_ONE,
    "vllmTeacher.gpus": AT_LEAST_ONE,
    "vllmTeacher.maxLoras": AT_LEAST_ONE,
    "vllmTeacher.pullResources": RESOURCES,
    "pipelineDefaults": {"$ref": "#/$defs/PipelineDefaults"},
    "gpuJobs.labels": STRING_MAP,
    "gpuJobs.pullPolicy": PULL_POLICY,
    "metrics.serviceMonitor.labels": STRING_MAP,
    "podDisruptionBudget.maxUnavailable": {"type": ["integer", "string"]},
}


def schema_for(value: Any, path: str = "") -> dict[str, Any]:
    """The schema of one value, from its path, its key name, or its type in values.yaml."""
    key = path.rsplit(".", 1)[-1]
    if path in BY_PATH:
        return dict(BY_PATH[path])
    if key in BY_KEY:
        return dict(BY_KEY[key])
    if isinstance(value, dict):
        props = {k: schema_for(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        return {"type": "object", "additionalProperties": False, "properties": props}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer", "minimum": 0}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, list):
        return {"type": "array"}
    return {"type": "string"}


def pipeline_defaults_defs() -> dict[str, Any]:
    """The pipeline spec's definitions plus PipelineDefaults: its sections that have defaults, none required."""
    spec = json.loads(PIPELINE_SCHEMA.read_text())
    sections = {k: v for k, v in spec["properties"].items() if k in ("prepare", "generate", "train", "evaluate")}
    defaults = {"type": "object", "additionalProperties": False, "properties": sections,
                "description": "Pipeline sections (version 1) this cluster's pipelines start from."}
    return {**spec["$defs"], "PipelineDefaults": defaults}


def build() -> str:
    values = YAML(typ="safe").load((CHART / "values.yaml").read_text())
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "synthtune chart values",
        **schema_for(values),
        "$defs": pipeline_defaults_defs(),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    (CHART / "values.schema.json").write_text(build())
    print(f"wrote {CHART / 'values.schema.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
