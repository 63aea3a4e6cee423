"""The prepare stage: raw industrial records to clean, deduplicated, length-stratified splits."""

from synthtune.dataprep.stage import KIND, cache_config, run
from synthtune.dataprep.suggest import explain_fields, source_yaml, suggest_fields, suggest_fields_yaml

__all__ = ["KIND", "cache_config", "explain_fields", "run", "source_yaml", "suggest_fields", "suggest_fields_yaml"]
