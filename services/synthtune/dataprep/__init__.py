"""Data preparation: raw industrial records to clean, deduplicated, leak-free, length-stratified splits."""

from synthtune.dataprep.stage import run
from synthtune.dataprep.suggest import suggest_fields

__all__ = ["run", "suggest_fields"]
