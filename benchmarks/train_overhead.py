"""Our trainer's tokens/s against a bare TRL SFTTrainer script: same model, data, LoRA, loss and steps, same run.

Both sides are TRL's SFTTrainer now; ours adds what makes a run a product: the store checkpoint, progress,
tokens/s per log line, the TensorBoard event files and the summary.

Run: PYTHONPATH=services python benchmarks/train_overhead.py [--steps 8] [--repeats 3]

Like with like: both train SmolLM2-135M with LoRA r=16, alpha 8, dropout 0.1 on q/k/v/o (TRL
refuses lm_head) over the same pre-tokenised chats, with the loss on assistant tokens only (TRL
builds the labels from the ``completion_mask`` column on both sides), fp32, AdamW (torch), cosine
schedule without warm-up, batch 4, no gradient checkpointing (TRL's default turns it on), no
evaluation, the same seed and the same thread count. Tokens are the non-padding tokens the
trainer saw, which the script checks are equal on both sides.

Two speeds each: the training loop alone (transformers' ``train_runtime``), and the whole call,
wall clock from loading the model to the saved adapter. Ours also writes the final checkpoint
(model, optimizer, RNG) to the store, which is what makes a run resumable; TRL saves none.
The two sides alternate and the median of the repeats is printed, with each run's speed; on a
shared machine the speed per CPU second of this process is the steadier figure. Target: ratio >= 0.95x.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

LORA = {"r": 16, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def examples(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append({"id": f"bench-{i}", "messages": [
            {"role": "system", "content": "You are an experienced maintenance engineer."},
            {"role": "user", "content": f"Filler head {i} underfills after the CIP run. What should I check?"},
            {"role": "assistant", "content": f"1. Check the valve seat and EPDM O-ring on head {i}. 2. Replace them if swollen. "
                                             "3. Run a fill-weight check on 20 bottles."}]})
    return out


def ours(path: str, data: object, steps: int) -> dict[str, float]:
    from synthtune.spec.train import TrainSpec
    from synthtune.trainer.config import TrainJob
    from synthtune.trainer.loop import train_worker

    spec = TrainSpec.model_validate({"method": "lora", "max_steps": steps, "batch_size": 4, "learning_rate": 1e-4, "warmup_steps": 0,
                                     "scheduler": "cosine", "optimizer": "adamw_torch", "precision": "fp32", "max_seq_len": 128,
                                     "eval_steps": 10_000, "checkpoint_steps": 10_000, "lora": LORA, "scaling": {"use_ray": False}})
    work = Path(tempfile.mkdtemp(prefix="bench-ours-"))
    t, c = time.perf_counter(), time.process_time()
    summary = train_worker(TrainJob(spec=spec, method="lora", model_path=path, data={"train": data.train, "validation": []},
                                    store_uri=str(work / "store"), artifact_id="adapter-bench", loss_mask=data.loss_mask,
                                    output_dir=str(work)))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    assert summary is not None
    return {"tokens": summary["tokens"], "loop_s": summary["runtime_s"], "wall_s": wall, "cpu_s": cpu}


def bare(path: str, data: object, steps: int) -> dict[str, float]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    work = Path(tempfile.mkdtemp(prefix="bench-trl-"))
    t, c = time.perf_counter(), time.process_time()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    cfg = SFTConfig(output_dir=str(work), per_device_train_batch_size=4, max_steps=steps, learning_rate=1e-4, warmup_steps=0,
                    lr_scheduler_type="cosine", optim="adamw_torch", logging_steps=1, save_strategy="no", eval_strategy="no",
                    report_to=[], max_length=128, seed=42, data_seed=42, disable_tqdm=True, gradient_checkpointing=False,
                    include_num_input_tokens_seen="non_padding", dataloader_num_workers=0, bf16=False, fp16=False, use_cpu=True,
                    completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=cfg, processing_class=tok, train_dataset=Dataset.from_list(data.train),
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    result = trainer.train()
    trainer.save_model(str(work / "adapter"))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"tokens": int(trainer.state.num_input_tokens_seen), "loop_s": float(result.metrics["train_runtime"]), "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    from transformers import AutoTokenizer

    from synthtune.llm.models import resolve_model
    from synthtune.trainer.data import build_dataset

    torch.set_num_threads(2)
    path = resolve_model("smollm2-135m-instruct")
    data = build_dataset(AutoTokenizer.from_pretrained(path), examples(32), 128, "truncate", 1, val_share=0.0)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "bare": []}
    for i in range(args.repeats):
        order = [("ours", ours), ("bare", bare)] if i % 2 == 0 else [("bare", bare), ("ours", ours)]
        for name, fn in order:
            runs[name].append(fn(path, data, args.steps))
    tokens = {name: {r["tokens"] for r in rs} for name, rs in runs.items()}
    assert tokens["ours"] == tokens["bare"] and len(tokens["ours"]) == 1, f"the two did not train the same tokens: {tokens}"
    n = next(iter(tokens["ours"]))

    def speed(name: str, key: str) -> float:
        return statistics.median(r["tokens"] / r[key] for r in runs[name])

    print(f"SmolLM2-135M LoRA r=16 on q/k/v/o, assistant-only loss, {args.steps} steps x batch 4 x <=128 tokens "
          f"({n} tokens), fp32 CPU, 2 threads, {args.repeats} repeats (median)")
    for key, label in (("loop_s", "training loop, wall clock"), ("wall_s", "whole call (load to saved adapter), wall clock"),
                       ("cpu_s", "whole call, per CPU second of this process (less sensitive to other load)")):
        b, o = speed("bare", key), speed("ours", key)
        each = {name: " ".join(f"{r['tokens'] / r[key]:.0f}" for r in runs[name]) for name in runs}
        print(f"{label}:")
        print(f"  bare TRL SFTTrainer: {b:8.1f} tokens/s   (runs: {each['bare']})")
        print(f"  synthtune trainer:   {o:8.1f} tokens/s   (runs: {each['ours']})   ratio {o / b:.2f}x")
    print("target: ratio >= 0.95x")


if __name__ == "__main__":
    main()
