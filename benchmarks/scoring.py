"""ROUGE scoring throughput: our evaluator's scorer vs calling rouge-score directly, same pairs, same run.

Run: PYTHONPATH=services python benchmarks/scoring.py [--pairs 5000]
Pairs are model-like answers against references, both made of the real maintenance text in
../shared/datasets (random words when it is absent). Prints pairs/s per core (CPU time of this
one process) for both, the ratio, and whether precision, recall and F1 are identical.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from importlib.metadata import version
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
TYPES = ["rouge1", "rouge2", "rougeL"]


def maintenance_texts() -> list[str]:
    with open(DATASETS / "excavator_work_orders_raw.csv", encoding="utf-8", newline="") as f:
        texts = [r["OriginalShorttext"] for r in csv.DictReader(f)]
    with open(DATASETS / "mining_truck_fmea.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            texts += [r["Potential Failure Mode"], r["Potential Effect(s) of Failure"], r["Potential Cause(s) of Failure"],
                      r["Current Controls"], r["Recommended Action"]]
    texts += [d["text"] for d in json.loads((DATASETS / "maintie_gold.json").read_text(encoding="utf-8"))]
    return [t for t in texts if t]


def make_pairs(n: int, seed: int = 1) -> tuple[list[str], list[str], str]:
    rng = random.Random(seed)
    if DATASETS.is_dir():
        texts, source = maintenance_texts(), "maintenance text from ../shared/datasets"
    else:
        words = ["replace", "seal", "valve", "pump", "leaking", "cylinder", "bearing", "noisy", "chain", "belt", "tension", "adjust", "check", "hydraulic", "hose", "filter", "motor", "overheating", "sensor", "misaligned", "lens", "clean", "torque", "chuck", "head"]
        texts, source = [" ".join(rng.choices(words, k=rng.randint(3, 10))) for _ in range(1000)], "random words (no shared datasets)"
    preds = ["\n".join(f"{i}. {s}." for i, s in enumerate(rng.sample(texts, rng.randint(2, 8)), 1)) for _ in range(n)]
    refs = [" ".join(rng.sample(texts, rng.randint(1, 3))) for _ in range(n)]
    return preds, refs, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=5000)
    args = parser.parse_args()
    from rouge_score import rouge_scorer
    from rouge_score_rs import RougeScorer

    from synthtune.evaluator.metrics import rouge

    preds, refs, source = make_pairs(args.pairs)
    t = time.process_time()
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
    reference = [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]
    base_s = time.process_time() - t
    t = time.process_time()
    ours = rouge(preds, refs)
    ours_s = time.process_time() - t
    port = RougeScorer(TYPES, use_stemmer=True)
    identical = all(ours[k][i] == reference[i][k].fmeasure for i in range(len(preds)) for k in TYPES) and all(
        tuple(port.score(r, p)[k]) == tuple(want[k]) for p, r, want in zip(preds, refs, reference, strict=True) for k in TYPES)
    tokens = sum(len(s.split()) for s in preds + refs) / len(preds)
    print(f"pairs: {args.pairs} of {source}, {tokens:.0f} words per pair")
    libs = ", ".join(f"{name} {version(name)}" for name in ("rouge-score", "rouge-score-rs", "nltk"))
    print(f"ROUGE-1/2/L with the Porter stemmer, CPU time of one process ({libs})")
    print(f"rouge-score directly: {args.pairs / base_s:10.0f} pairs/s/core")
    print(f"synthtune scorer:     {args.pairs / ours_s:10.0f} pairs/s/core   ratio {base_s / ours_s:.1f}x   "
          f"identical precision/recall/F1: {identical}")
    print("target: >= 15000 pairs/s/core with identical scores")


if __name__ == "__main__":
    main()
