"""Evaluation: base vs tuned on held-out records, reference metrics, order-swapped judge, report."""

from synthtune.evaluator.stage import run

__all__ = ["run"]
