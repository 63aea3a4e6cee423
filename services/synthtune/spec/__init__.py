"""Pydantic models of the pipeline YAML, loading with line numbers, and the JSON Schema."""

from synthtune.spec.evaluate import EvaluateSpec, JudgeSpec
from synthtune.spec.generate import FilterSpec, GenerateSpec, MethodSpec, ModelEndpointSpec
from synthtune.spec.loader import json_schema, json_schema_text, load_spec, load_spec_text
from synthtune.spec.pipeline import SPEC_VERSION, PipelineSpec
from synthtune.spec.prepare import PrepareSpec, SplitSpec
from synthtune.spec.source import SourceSpec
from synthtune.spec.train import LoraSpec, TrainSpec

__all__ = [
    "SPEC_VERSION", "EvaluateSpec", "FilterSpec", "GenerateSpec", "JudgeSpec", "LoraSpec", "MethodSpec",
    "ModelEndpointSpec", "PipelineSpec", "PrepareSpec", "SourceSpec", "SplitSpec", "TrainSpec",
    "json_schema", "json_schema_text", "load_spec", "load_spec_text",
]
