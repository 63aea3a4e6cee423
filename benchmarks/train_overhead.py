"""Our trainer's tokens/s against a bare TRL SFTTrainer script: same model, data, LoRA and steps, same run.

Run: PYTHONPATH=services python benchmarks/train_overhead.py [--steps 8] [--repeats 2]
Both train LoRA on q/k/v/o (TRL refuses lm_head) over the same pre-tokenised chats with an
assistant-only loss; tokens are the non-padding tokens the trainer saw. Target: ratio >= 0.95x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def examples(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append({"messages": [
            {"role": "system", "content": "You are an experienced maintenance engineer."},
            {"role": "user", "content": f"Filler head {i} underfills after the CIP run. What should I check?"},
            {"role": "assistant", "content": f"1. Check the valve seat and EPDM O-ring on head {i}. 2. Replace them if swollen. "
                                             "3. Run a fill-weight check on 20 bottles."}]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from synthtune.llm.models import resolve_model
    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.data import build_dataset
    from synthtune.trainer.loop import train_worker

    torch.set_num_threads(2)
    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    data = build_dataset(tok, examples(32), 128, "truncate", 1, val_share=0.0)
    spec = TrainSpec.model_validate({"method": "lora", "max_steps": args.steps, "batch_size": 4, "learning_rate": 1e-4, "warmup_steps": 0,
                                     "max_seq_len": 128, "eval_steps": 10_000, "checkpoint_steps": 10_000, "gradient_checkpointing": False,
                                     "lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}, "scaling": {"use_ray": False}})
    ours, bare = [], []
    for _ in range(args.repeats):
        work = Path(tempfile.mkdtemp(prefix="bench-train-"))
        (work / "data.json").write_text(json.dumps({"train": data.train, "validation": []}))
        summary = train_worker({"train_spec": spec.model_dump(), "method": "lora", "model_path": path, "data_file": str(work / "data.json"),
                                "output_dir": str(work), "store_uri": str(work / "store"), "artifact_id": "adapter-bench"})
        ours.append(summary["tokens"] / summary["runtime_s"])

        model = AutoModelForCausalLM.from_pretrained(path)
        cfg = SFTConfig(output_dir=str(work / "trl"), per_device_train_batch_size=4, max_steps=args.steps, learning_rate=1e-4,
                        logging_steps=1, save_strategy="no", report_to=[], max_length=128, seed=42, disable_tqdm=True,
                        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0, bf16=False, fp16=False)
        trainer = SFTTrainer(model=model, args=cfg, processing_class=tok, train_dataset=Dataset.from_list(data.train),
                             peft_config=LoraConfig(r=16, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                    task_type="CAUSAL_LM"))
        t = time.perf_counter()
        result = trainer.train()
        runtime = float(result.metrics.get("train_runtime", time.perf_counter() - t))
        bare.append(trainer.state.num_input_tokens_seen / runtime)
    print(f"SmolLM2-135M LoRA r=16 on q/k/v/o, {args.steps} steps x batch 4 x <=128 tokens, CPU, {args.repeats} repeats (median)")
    print(f"bare TRL SFTTrainer: {statistics.median(bare):8.1f} tokens/s")
    print(f"synthtune trainer:   {statistics.median(ours):8.1f} tokens/s   ratio {statistics.median(ours) / statistics.median(bare):.2f}x")
    print("target: ratio >= 0.95x")


if __name__ == "__main__":
    main()
