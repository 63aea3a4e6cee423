"""ROUGE scoring throughput: our evaluator's scorer vs calling rouge-score directly, same pairs, same run.

Run: PYTHONPATH=services python benchmarks/scoring.py [--pairs 5000]
Prints pairs/s per core for both, the ratio, and whether the scores are identical.
"""

from __future__ import annotations

import argparse
import random
import time


def make_pairs(n: int, seed: int = 1) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    words = ["replace", "seal", "valve", "pump", "leaking", "cylinder", "bearing", "noisy", "chain", "belt", "tension", "adjust", "check", "hydraulic", "hose", "filter", "motor", "overheating", "sensor", "misaligned", "lens", "clean", "torque", "chuck", "head"]
    preds = [" ".join(rng.choices(words, k=rng.randint(15, 60))) for _ in range(n)]
    refs = [" ".join(rng.choices(words, k=rng.randint(10, 40))) for _ in range(n)]
    return preds, refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=5000)
    args = parser.parse_args()
    from rouge_score import rouge_scorer

    from synthtune.evaluator.metrics import rouge

    preds, refs = make_pairs(args.pairs)
    t = time.process_time()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    reference = [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]
    base_s = time.process_time() - t
    t = time.process_time()
    ours = rouge(preds, refs)
    ours_s = time.process_time() - t
    identical = all(ours[k][i] == reference[i][k].fmeasure for i in range(len(preds)) for k in ("rouge1", "rouge2", "rougeL"))
    print(f"pairs: {args.pairs} (ROUGE-1/2/L with stemming, CPU time of one process)")
    print(f"rouge-score directly: {args.pairs / base_s:10.0f} pairs/s/core")
    print(f"synthtune scorer:     {args.pairs / ours_s:10.0f} pairs/s/core   ratio {base_s / ours_s:.2f}x   identical scores: {identical}")
    print("target: >= 15000 pairs/s/core with identical scores")


if __name__ == "__main__":
    main()
