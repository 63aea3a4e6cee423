"""QLoRA and LoRA on a Llama-3-8B-shaped model with random weights: our trainer against bare TRL + PEFT, same data.

Run on a GPU:  PYTHONPATH=services python benchmarks/train_gpu.py --shape llama3-8b --steps 10
Run on CPU:    PYTHONPATH=services python benchmarks/train_gpu.py --shape tiny --steps 4

Nothing is downloaded: the model is built from a config (Llama-3-8B: 32 layers, hidden 4096, GQA
8 KV heads, vocabulary 128,256) with random weights and saved once as safetensors, so both
sides load it with ``from_pretrained`` (QLoRA: NF4 with double quantisation, bf16 compute). The
token ids come from SmolLM2's tokenizer and chat template (the embedded model), over synthetic
maintenance chats; the loss is on the answers on both sides.

Each (side, method) trains in its own subprocess, so peak memory is that run's own: on GPU
``torch.cuda.max_memory_allocated``, on CPU the process's peak RSS. tokens/s is non-padding
tokens over transformers' ``train_runtime``; MFU is 4 FLOPs a parameter a token (LoRA: the frozen
weights get no weight gradient) over the GPU's bf16 dense peak (None on CPU). Settings follow the
thesis: LoRA r=16, alpha 8, dropout 0.1 on q/k/v/o, paged AdamW 32-bit (AdamW on CPU), cosine,
gradient checkpointing on GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192, "rope_theta": 500000.0},
    "tiny": {"hidden_size": 64, "intermediate_size": 224, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 49152, "max_position_embeddings": 2048, "rope_theta": 500000.0},
}
LORA = {"r": 16, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def build_model(shape: str, folder: Path) -> None:
    """A random-weight Llama of ``shape`` (bf16 on GPU, fp32 on CPU) with SmolLM2's tokenizer, saved as safetensors."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synthtune.llm.models import resolve_model

    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    config = LlamaConfig(**SHAPES[shape], tie_word_embeddings=False, dtype=dtype)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct")).save_pretrained(folder)


def chats(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        out.append({"id": f"bench-{i}", "messages": [
            {"role": "system", "content": "You are an experienced maintenance engineer."},
            {"role": "user", "content": f"Filler head {i} underfills after the CIP run and the level probe drifts. What should I check?"},
            {"role": "assistant", "content": f"1. Check the valve seat and EPDM O-ring on head {i}; replace them if swollen. "
                                             "2. Recalibrate the level probe against a reference bottle. 3. Run a fill-weight "
                                             "check on 20 bottles and compare with the setpoint. " * 3}]})
    return out


def _spec(method: str, args: argparse.Namespace, on_gpu: bool) -> Any:
    from synthtune.spec.train import TrainSpec

    return TrainSpec.model_validate({
        "method": method, "max_steps": args.steps, "batch_size": args.batch, "micro_batch_size": args.batch,
        "learning_rate": 2e-4, "warmup_steps": 0, "scheduler": "cosine", "optimizer": "paged_adamw_32bit",
        "max_seq_len": args.seq_len, "eval_steps": 10_000, "checkpoint_steps": 10_000, "lora": LORA,
        "precision": "bf16" if on_gpu else "fp32", "gradient_checkpointing": on_gpu,
        "quantization": {"compute_dtype": "bfloat16" if on_gpu else "float32"}, "scaling": {"use_ray": False}})


def ours(model_dir: str, method: str, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from synthtune.trainer.config import TrainJob
    from synthtune.trainer.loop import train_worker

    on_gpu = torch.cuda.is_available()
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-ours-"))
    summary = train_worker(TrainJob(spec=_spec(method, args, on_gpu), method=method, model_path=model_dir,
                                    data={"train": data.train, "validation": []}, store_uri=str(work / "store"),
                                    artifact_id="adapter-bench", loss_mask=data.loss_mask, gradient_checkpointing=on_gpu,
                                    output_dir=str(work)))
    assert summary is not None
    return {"tokens": summary["tokens"], "runtime_s": summary["runtime_s"], "parameters": summary["parameters"]}


def bare(model_dir: str, method: str, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """TRL + PEFT as their documentation shows it, nothing of ours in the loop."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from synthtune.trainer.model import count_parameters

    on_gpu = torch.cuda.is_available()
    compute = torch.bfloat16 if on_gpu else torch.float32
    kwargs: dict[str, Any] = {"dtype": compute}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=compute)
        if on_gpu:
            kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_gpu)
    cfg = SFTConfig(output_dir=tempfile.mkdtemp(prefix="bench-gpu-trl-"), per_device_train_batch_size=args.batch, max_steps=args.steps,
                    learning_rate=2e-4, warmup_steps=0, lr_scheduler_type="cosine", optim="paged_adamw_32bit" if on_gpu else "adamw_torch",
                    logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", max_length=args.seq_len, seed=42,
                    bf16=on_gpu, fp16=False, use_cpu=not on_gpu, gradient_checkpointing=on_gpu, disable_tqdm=True,
                    include_num_input_tokens_seen="non_padding", completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=cfg, processing_class=AutoTokenizer.from_pretrained(model_dir),
                         train_dataset=Dataset.from_list(data.train),
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    result = trainer.train()
    return {"tokens": int(trainer.state.num_input_tokens_seen), "runtime_s": float(result.metrics["train_runtime"]),
            "parameters": count_parameters(trainer.model)}


def one(side: str, method: str, model_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import resource

    import torch
    from transformers import AutoTokenizer

    from synthtune.trainer.data import build_dataset
    from synthtune.trainer.sizing import mfu, peak_flops

    data = build_dataset(AutoTokenizer.from_pretrained(model_dir), chats(args.batch * args.steps), args.seq_len, "truncate", 1, val_share=0.0)
    out = (ours if side == "ours" else bare)(model_dir, method, data, args)
    on_gpu = torch.cuda.is_available()
    out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20 if on_gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["tokens_per_s"] = round(out["tokens"] / out["runtime_s"], 1)
    out["mfu"] = mfu(out["parameters"], out["tokens"], out["runtime_s"], method, peak_flops())
    out["device"] = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    parser.add_argument("--methods", default="qlora,lora")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--model-dir", help="reuse a model folder built by an earlier run")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one[0], args.one[1], args.model_dir, args)), flush=True)
        return
    model_dir = args.model_dir or tempfile.mkdtemp(prefix=f"bench-{args.shape}-")
    if not args.model_dir:
        build_model(args.shape, Path(model_dir))
    results = []
    for method in args.methods.split(","):
        for side in ("bare", "ours"):
            cmd = [sys.executable, __file__, "--one", side, method, "--model-dir", model_dir, "--steps", str(args.steps),
                   "--batch", str(args.batch), "--seq-len", str(args.seq_len)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{side} {method} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
            results.append({"side": side, "method": method, **json.loads(line[7:])})
    print(f"{args.shape}: {args.steps} steps x batch {args.batch} x <= {args.seq_len} tokens, device {results[0]['device'] if results else '?'}")
    print(f"{'method':6} {'side':5} {'tokens/s':>10} {'peak MiB':>10} {'MFU':>7} {'parameters':>14}")
    for r in results:
        print(f"{r['method']:6} {r['side']:5} {r['tokens_per_s']:10.1f} {r['peak_memory_mb']:10.1f} {r['mfu'] if r['mfu'] is not None else '-':>7} {r['parameters']:14,d}")
    if args.out:
        Path(args.out).write_text(json.dumps({"shape": args.shape, "steps": args.steps, "batch": args.batch, "seq_len": args.seq_len,
                                              "results": results}, indent=1))


if __name__ == "__main__":
    main()
