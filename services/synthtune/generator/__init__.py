"""Synthetic data generation: teacher backends, registered methods, quality filters, resumable shards."""

from synthtune.generator.stage import run

__all__ = ["run"]
