"""The `evaluate` section: answer generation, metrics, judge and report."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from synthtune.spec.base import SpecModel, field
from synthtune.spec.generate import KeyEnv, ModelEndpointSpec

Metric = Literal["rouge", "bleu", "meteor", "semantic", "function_call", "health"]


class JudgeSpec(ModelEndpointSpec):
    enabled: bool = field(True, help="Run the pairwise tuned-vs-base judge (both orders).")
    rubric: bool = field(False, help="Also score each answer 1-10 against a rubric.")


class EvalSetSpec(SpecModel):
    name: str = field(help="Set name, used in report.json `sets.<name>` and by `gate.set`.", pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = field(help="CSV, XLSX or JSONL file; relative paths resolve against the pipeline's folder. An s3://bucket/key URI "
                      "(e.g. from `synthtune upload`) is read from S3 where the stage runs.")
    fields: dict[Literal["question", "reference"], str] | None = field(
        None, help="Columns holding the question and the reference, e.g. {question: Question, reference: Answer}; "
        "leave unset for chat JSONL lines (messages plus reference or expected_call)."
    )
    sheet: str | None = field(None, help="XLSX sheet to read; the first when unset.")


class GateSpec(SpecModel):
    metric: str = field("rougeL", help="Metric the best tuned model must gain on (a key of report.json `metrics`, e.g. rougeL, function_call).")
    set: str = field("test", help="`test` (the held-out split) or the name of an evaluate.sets entry.")
    min_gain: float = field(0.0, help="Smallest mean gain over base that passes.")
    significant: bool = field(True, help="Also require the bootstrap 95% interval of the gain to lie above min_gain.")


class EvaluateSpec(SpecModel):
    backend: Literal["transformers", "vllm", "openai", "vllm_server"] = field(
        "transformers", help="Backend generating the models' answers: transformers (CPU), vllm (offline engine on a GPU), openai (an endpoint "
        "already serving base and adapters by name) or vllm_server (a vLLM OpenAI server of the base model with --enable-lora: "
        "each adapter is loaded at run time and unloaded after).")
    base_url: str | None = field(None, help="Endpoint serving base and adapters (openai, vllm_server), e.g. http://eval-server:8000/v1.")
    base_urls: list[str] = field(default_factory=list, help="More endpoints like base_url (replicas): requests spread over all of them, "
                                 "one that fails is skipped while it fails; vllm_server loads each adapter into every one.")
    api_key_env: KeyEnv | None = field(
        None, help="Environment variable holding the key for base_url (openai, vllm_server; not AWS_* or SYNTHTUNE_*); never logged."
    )
    served_model: str | None = field(None, help="Name the server gives the base model (vllm_server, openai); default: train.base_model.")
    lora_dir: str | None = field(None, help="vllm_server: folder on a volume the evaluator and the server both mount; each adapter is "
                                 "copied there for the server to load. Unset: the adapter's own local folder (server on this machine).")
    server_lora_dir: str | None = field(None, help="vllm_server: the same folder as the server sees it (default: lora_dir).")
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
    sets: list[EvalSetSpec] = field(default_factory=list, help="Your own evaluation sets, each answered by base and every tuned model; training data is decontaminated against them.")
    gate: GateSpec | None = field(None, help="Promotion gate: when the best tuned model does not pass, the run ends with exit code 3 (report written).")

    @model_validator(mode="after")
    def _sets_and_gate_agree(self) -> EvaluateSpec:
        names = [s.name for s in self.sets]
        for name in names:
            if name == "test" or names.count(name) > 1:
                raise ValueError(f"sets: the name {name!r} is {'reserved for the test split' if name == 'test' else 'used twice'}")
        if self.gate is not None and self.gate.set != "test" and self.gate.set not in names:
            raise ValueError(f"gate.set {self.gate.set!r} is neither 'test' nor a set in evaluate.sets ({', '.join(names) or 'none'})")
        return self

    @model_validator(mode="after")
    def _endpoint_given(self) -> EvaluateSpec:
        if self.backend == "vllm_server" and not self.base_url:
            raise ValueError("evaluate.backend vllm_server needs evaluate.base_url (the vLLM server, e.g. http://eval-server:8000/v1)")
        if self.base_urls and not self.base_url:
            raise ValueError("evaluate.base_urls lists more replicas of base_url: set base_url too")
        return self
