"""synthtune: records -> synthetic instruction data -> fine-tuned open LLM -> report."""

__version__ = "0.1.0"
