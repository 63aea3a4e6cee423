"""The `train` section: QLoRA/LoRA/full fine-tuning, defaults from the reference thesis."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from synthtune.spec.base import SpecModel, field

# The reference thesis also adapts lm_head. TRL's SFTTrainer computes the loss from lm_head.weight
# directly (a fused, chunked LM head that never builds the whole logits tensor), so an adapter there
# would never be trained, and SFTTrainer refuses one.
THESIS_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


class LoraSpec(SpecModel):
    r: int = field(16, help="LoRA rank.", ge=1)
    alpha: float = field(8, help="LoRA alpha (scaling = alpha / r).", gt=0)
    dropout: float = field(0.1, help="Dropout on the LoRA path.", ge=0, lt=1)
    target_modules: list[str] = field(
        default_factory=lambda: list(THESIS_TARGET_MODULES),
        help="Module names to adapt (the q/k/v/o projections by default; lm_head cannot be: TRL's fused LM head never trains it).")

    @field_validator("target_modules")
    @classmethod
    def _no_lm_head(cls, v: list[str]) -> list[str]:
        if "lm_head" in v:
            raise ValueError("lm_head cannot carry a LoRA adapter: TRL's SFTTrainer computes the loss from lm_head.weight directly, "
                             "so the adapter would never train; leave lm_head out (the default adapts q_proj, k_proj, v_proj, o_proj)")
        if not v:
            raise ValueError("name at least one module to adapt (the default is q_proj, k_proj, v_proj, o_proj)")
        return v


class QuantSpec(SpecModel):
    bits: Literal[4, 8] = field(4, help="Weight bits for qlora.")
    quant_type: Literal["nf4", "fp4"] = field("nf4", help="4-bit data type.")
    double_quant: bool = field(True, help="Quantise the quantisation constants too.")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = field("bfloat16", help="Compute dtype of the 4-bit layers.")


class ScalingSpec(SpecModel):
    workers: int = field(1, help="Ray Train workers. More than one node needs an S3 store (or a file store every node mounts at the same path).", ge=1)
    gpus_per_worker: float = field(0, help="GPUs per worker; 0 runs on CPU.", ge=0)
    cpus_per_worker: float = field(1, help="CPUs per worker.", gt=0)
    use_ray: bool = field(True, help="Run through Ray Train (TorchTrainer); false trains in this process (e.g. where Ray is not installed).")


class MlflowSpec(SpecModel):
    tracking_uri: str = field(help="MLflow tracking URI: http(s)://host:port of a tracking server, or file:///path of a local store.")
    experiment: str = field("synthtune", help="MLflow experiment the runs go to (created when missing).")


class TrackingSpec(SpecModel):
    mlflow: MlflowSpec | None = field(
        None, help="Also log each training run to MLflow (params, metrics per step, the adapter's store URI). "
                   "A server that does not answer is warned about and never fails training.")


class TrainSpec(SpecModel):
    base_model: str = field("smollm2-135m-instruct", help="Base model: the embedded default, an HF id, a local path, or a .gguf file.")
    method: Literal["qlora", "lora", "full"] | None = field(None, help="qlora (default on GPU), lora (default on CPU) or full.")
    lora: LoraSpec = field(default_factory=LoraSpec, help="LoRA adapter shape.")
    quantization: QuantSpec = field(default_factory=QuantSpec, help="QLoRA quantisation.")
    epochs: float = field(7, help="Training epochs (ignored when max_steps is set).", gt=0)
    max_steps: int | None = field(None, help="Stop after this many optimiser steps.", ge=1)
    learning_rate: float = field(3e-5, help="Peak learning rate.", gt=0)
    warmup_steps: int = field(300, help="Linear warm-up steps before the cosine schedule.", ge=0)
    scheduler: Literal["cosine", "linear", "constant"] = field("cosine", help="Learning-rate schedule after warm-up.")
    optimizer: str = field("paged_adamw_32bit", help="Optimiser name as transformers knows it.")
    batch_size: int = field(18, help="Effective batch size over all workers (sequences per optimiser step).", ge=1)
    micro_batch_size: int | None = field(
        None, help="Sequences per forward pass; gradient accumulation makes up the rest. Unset: the whole batch on a GPU; "
                   "on CPU as many as keep one pass's logits within 2 GB.", ge=1)
    max_seq_len: int = field(1024, help="Longest sequence in tokens.", ge=16)
    overlong: Literal["truncate", "reject"] = field("truncate", help="What to do with sequences longer than max_seq_len.")
    packing: bool = field(False, help="Padding-free packing of sequences.")
    gradient_checkpointing: bool = field(
        True, help="Trade compute for memory. On GPU as set; on CPU only when set explicitly in the spec (off there by default).")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field("auto", help="Training precision; auto picks bf16 on GPUs that have it, fp32 on CPU.")
    eval_steps: int = field(
        50, help="Evaluation loss every this many steps, at most every total_steps // 4 (so short runs get a curve), and after the last step.", ge=1)
    early_stopping_patience: int | None = field(None, help="Stop after this many evaluations without improvement.", ge=1)
    checkpoint_steps: int = field(100, help="Checkpoint to the store every this many steps.", ge=1)
    seed: int = field(42, help="Seed for reproducible training.")
    merge: bool = field(False, help="Also save a merged model.")
    trust_remote_code: bool = field(False, help="Allow model code from the model's folder (off by default).")
    scaling: ScalingSpec = field(default_factory=ScalingSpec, help="Ray Train scaling.")
    tracking: TrackingSpec = field(
        default_factory=TrackingSpec, help="Experiment tracking. TensorBoard event files are always written into the adapter artifact.")
