"""The `generate` section: teacher backend, generation methods and quality filters."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, model_validator

from synthtune.spec.base import SpecModel, field

Backend = Literal["transformers", "openai", "vllm"]

# A spec names where a key lives but may not point at the store's or synthtune's own secrets:
# with a base_url of its choice it could otherwise send them to any server as a bearer token.
RESERVED_KEY_PREFIXES = ("AWS_", "SYNTHTUNE_")
_KEY_ENV = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _check_key_env(name: str) -> str:
    if not _KEY_ENV.match(name):
        raise ValueError("api_key_env must be an environment variable name in capitals (letters, digits, '_')")
    if name.upper().startswith(RESERVED_KEY_PREFIXES):
        raise ValueError(f"api_key_env may not name {', '.join(p + '*' for p in RESERVED_KEY_PREFIXES)} variables (store and service secrets)")
    return name


KeyEnv = Annotated[str, AfterValidator(_check_key_env)]
# Labels name adapters, files and report rows (HTML, plot legends): plain words only, no markup or mathtext.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ModelEndpointSpec(SpecModel):
    """An LLM used as teacher or judge; the same shape for every backend."""

    backend: Backend = field("transformers", help="transformers (in-process, CPU default), openai (any compatible API) or vllm (offline GPU).")
    model: str = field("smollm2-135m-instruct", help="Model name for the API, or an HF id / local path / .gguf for in-process backends.")
    base_url: str | None = field(None, help="OpenAI-compatible endpoint, e.g. http://vllm:8000/v1 (openai backend).")
    base_urls: list[str] = field(default_factory=list, help="More endpoints serving the same model as base_url (replicas): requests "
                                 "spread over all of them round-robin, and one that fails is skipped while it fails.")
    api_key_env: KeyEnv | None = field(
        None, help="Name of the environment variable holding the API key (not AWS_* or SYNTHTUNE_*; the server may allow only "
        "the names in SYNTHTUNE_KEY_ENVS); the key is never logged."
    )
    temperature: float = field(0.7, help="Sampling temperature.", ge=0, le=2)
    top_p: float = field(1.0, help="Nucleus sampling probability mass.", gt=0, le=1)
    max_tokens: int = field(512, help="Largest number of tokens per completion.", ge=1)
    seed: int | None = field(0, help="Sampling seed, where the backend honours one.")
    concurrency: int = field(8, help="Requests in flight at once (openai) or batch size (in-process).", ge=1)
    timeout_s: float = field(120.0, help="Per-request timeout in seconds.", gt=0)
    max_retries: int = field(5, help="Retries on 429/5xx/timeouts, with backoff honouring Retry-After.", ge=0)
    backoff_s: float = field(1.0, help="First retry delay in seconds; it doubles per retry (with jitter) unless the server sends Retry-After.", ge=0)
    price_per_1k_input: float | None = field(None, help="Price per 1,000 prompt tokens, for the cost estimate.", ge=0)
    price_per_1k_output: float | None = field(None, help="Price per 1,000 completion tokens, for the cost estimate.", ge=0)

    @model_validator(mode="after")
    def _replicas_of_base_url(self) -> ModelEndpointSpec:
        if self.base_urls and not self.base_url:
            raise ValueError("base_urls lists more replicas of base_url: set base_url too")
        return self


class MethodSpec(SpecModel):
    name: Literal["record_qa", "document_qa", "event_scenario", "evol", "persona"] = field(
        help="Generation method, registered by name."
    )
    label: str | None = field(
        None, help="Name used for this method's adapter and report rows (letters, digits, '_', '.', '-'; at most 64); defaults to `name`.",
        pattern=LABEL_PATTERN,
    )
    pairs_per_record: int = field(1, help="Examples generated per input record or chunk.", ge=1)
    prompt_version: str | None = field(None, help="Prompt template version; the newest shipped when unset.")
    options: dict[str, Any] = field(default_factory=dict, help="Method-specific options (e.g. personas, evolution steps, languages).")

    @property
    def key(self) -> str:
        return self.label or self.name


class FilterSpec(SpecModel):
    judge: bool = field(False, help="Score each example with the teacher against a rubric and keep those at or above `min_score`.")
    min_score: float = field(6.0, help="Lowest rubric score (1-10) kept when the judge filter is on.", ge=1, le=10)
    min_chars: int = field(20, help="Shortest assistant answer kept.", ge=0)
    max_chars: int = field(4000, help="Longest assistant answer kept.", ge=1)
    refusals: bool = field(True, help="Reject refusals and greetings.")
    keep_truncated: bool = field(
        False, help="Keep replies cut off at max_tokens, trimmed to their last complete sentence (small CPU teachers ramble); "
        "false rejects them."
    )
    dedup_near: float | Literal[False] = field(0.9, help="Near-duplicate threshold among generated questions, or false.")
    decontaminate: bool = field(True, help="Reject examples whose n-grams overlap the prepared test split.")
    ngram: int = field(8, help="n for the decontamination n-gram overlap.", ge=3)
    ngram_min: int = field(
        4, help="Test texts shorter than `ngram` words but at least this long are matched whole; shorter ones are too generic to prove contamination.", ge=1
    )
    language: str | None = field(
        None, help="Expected language of generated examples (ISO 639-1 code such as 'en', or a name such as 'English'); others are rejected. Persona languages set their own."
    )


class GenerateSpec(SpecModel):
    teacher: ModelEndpointSpec = field(default_factory=ModelEndpointSpec, help="The teacher LLM.")
    methods: list[MethodSpec] = field(
        default_factory=lambda: [MethodSpec(name="record_qa")], help="Methods to run side by side; one adapter is trained per method.", min_length=1
    )
    filters: FilterSpec = field(default_factory=FilterSpec, help="Quality filters applied to every method's output.")
    limit: int | None = field(None, help="Use at most this many training records per method (quick runs).", ge=1)
    system_prompt: str = field(
        "You are an experienced maintenance engineer. Answer with clear, numbered troubleshooting steps.",
        help="System message placed in every generated chat example.",
    )
    seed: int = field(42, help="Seed for sampling records and prompt variations.")
    shard_size: int | None = field(
        None, help="Records planned together; each finished record is saved under the store's work/ prefix at the end of its step, "
        "so a killed run resumes where it stopped and loses at most one group's requests in flight; default teacher.concurrency.", ge=1
    )
    max_failed_fraction: float = field(
        0.5, help="If more than this share of records fail at the teacher (after retries), the stage fails as retryable instead of writing a partial dataset; finished records stay saved for the resume.", ge=0, le=1
    )
