"""The `evaluate` section: answer generation, metrics, judge and report."""

from __future__ import annotations

from typing import Literal

from synthtune.spec.base import SpecModel, field
from synthtune.spec.generate import KeyEnv, ModelEndpointSpec

Metric = Literal["rouge", "bleu", "meteor", "semantic", "function_call", "health"]


class JudgeSpec(ModelEndpointSpec):
    enabled: bool = field(True, help="Run the pairwise tuned-vs-base judge (both orders).")
    rubric: bool = field(False, help="Also score each answer 1-10 against a rubric.")


class EvaluateSpec(SpecModel):
    backend: Literal["transformers", "vllm", "openai"] = field("transformers", help="Backend generating the models' answers.")
    base_url: str | None = field(None, help="Endpoint serving base and adapters (openai backend).")
    api_key_env: KeyEnv | None = field(
        None, help="Environment variable holding the key for base_url (openai backend; not AWS_* or SYNTHTUNE_*); never logged."
    )
    metrics: list[Metric] = field(default_factory=lambda: ["rouge", "bleu", "meteor"], help="Reference metrics to compute.")
    temperatures: list[float] = field(default_factory=lambda: [0.0], help="Temperatures to sweep, e.g. [0, 0.7].")
    samples: int = field(1, help="Samples per prompt at temperatures above 0.", ge=1)
    max_new_tokens: int = field(256, help="Longest generated answer in tokens.", ge=1)
    batch_size: int = field(8, help="Prompts per generation batch.", ge=1)
    limit: int | None = field(None, help="Evaluate at most this many test records.", ge=1)
    judge: JudgeSpec = field(default_factory=lambda: JudgeSpec(enabled=False), help="LLM judge (off unless enabled).")
    forgetting_probe: bool = field(True, help="Score a small shipped general-knowledge set before and after tuning.")
    bootstrap: int = field(1000, help="Bootstrap resamples for the leaderboard's 95% intervals.", ge=0)
    examples: int = field(12, help="Side-by-side answers shown in the report.", ge=0)
    seed: int = field(42, help="Seed for sampling and bootstrap.")
