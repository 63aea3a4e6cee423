"""Synthetic data generation: teacher backends, five methods, quality filters, resumable shards."""

from synthtune.generator.methods import REGISTRY as METHODS
from synthtune.generator.stage import run

__all__ = ["METHODS", "run"]
