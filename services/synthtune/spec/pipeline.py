"""The whole pipeline YAML (`version: 1`)."""

from __future__ import annotations

from pydantic import field_validator

from synthtune.spec.base import SpecModel, field
from synthtune.spec.evaluate import EvaluateSpec
from synthtune.spec.generate import GenerateSpec
from synthtune.spec.prepare import PrepareSpec
from synthtune.spec.source import SourceSpec
from synthtune.spec.train import TrainSpec

SPEC_VERSION = 1


class PipelineSpec(SpecModel):
    version: int = field(help="Spec format version; this release reads version 1.")
    name: str = field(help="Pipeline name, used in run ids and the report.", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    source: SourceSpec = field(help="Where the records are and how their columns map to fields.")
    prepare: PrepareSpec = field(default_factory=PrepareSpec, help="Cleaning, dedup, redaction and split.")
    generate: GenerateSpec = field(default_factory=GenerateSpec, help="Synthetic data generation.")
    train: TrainSpec = field(default_factory=TrainSpec, help="Fine-tuning, one adapter per generation method.")
    evaluate: EvaluateSpec = field(default_factory=EvaluateSpec, help="Base vs tuned evaluation and report.")
    base_dir: str | None = field(None, help="Folder that relative source paths resolve against; the pipeline file's folder when unset.")

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value > SPEC_VERSION:
            raise ValueError(
                f"this pipeline is spec version {value}, but this synthtune reads version {SPEC_VERSION}; upgrade synthtune"
            )
        if value < 1:
            raise ValueError("version must be 1")
        return value

    def method_keys(self) -> list[str]:
        return [m.key for m in self.generate.methods]
