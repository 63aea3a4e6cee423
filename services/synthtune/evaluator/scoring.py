"""Scores of one model on one evaluation set, and what is computed from them: leaderboard, gate, determinism."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from synthtune.evaluator import metrics as M
from synthtune.records import EvalItem
from synthtune.spec.evaluate import EvaluateSpec, GateSpec

# A gate or leaderboard metric -> the per-item score list it is bootstrapped over.
PER_ITEM = {"bleu": "bleu_sentence", "function_args_accuracy": "function_call"}


@dataclass
class ModelResult:
    """One model's answers on one set at one temperature: rows for predictions.jsonl, summary, per-item scores."""

    name: str
    temperature: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    per_item: dict[str, list[float]] = field(default_factory=dict)


def bootstrap_ci(diffs: list[float], n: int, seed: int) -> list[float]:
    """95% percentile interval of the mean paired difference."""
    if not diffs or n == 0:
        return [0.0, 0.0]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(n))
    return [means[int(0.025 * (n - 1))], means[int(0.975 * (n - 1))]]


def score(ev: EvaluateSpec, result: ModelResult) -> None:
    """Fill ``result.summary`` and ``result.per_item`` from its rows (reference metrics, calls, health)."""
    ref = [r for r in result.rows if "expected_call" not in r]
    calls = [r for r in result.rows if "expected_call" in r]
    preds, refs = [r["prediction"] for r in ref], [r["reference"] for r in ref]
    wanted = set(ev.metrics)
    per: dict[str, list[float]] = {}
    summary: dict[str, Any] = {}
    if preds:
        if "rouge" in wanted:
            per.update(M.rouge(preds, refs))
        if "bleu" in wanted:
            summary["bleu"] = M.bleu_corpus(preds, refs)
            per["bleu_sentence"] = M.bleu_sentences(preds, refs)
        if "meteor" in wanted:
            per["meteor"] = M.meteor(preds, refs)
        if "semantic" in wanted:
            per["semantic"] = M.semantic(preds, refs)
    summary.update({k: M.mean(v) for k, v in per.items() if k != "bleu_sentence"})
    summary["n"] = len(preds)
    summary.update(M.health([r["prediction"] for r in result.rows], [r["finish_reason"] for r in result.rows]))
    if calls:
        c_preds, expected = [r["prediction"] for r in calls], [r["expected_call"] for r in calls]
        summary.update(M.function_call_accuracy(c_preds, expected))
        summary["function_calls"] = len(calls)
        per["function_call"] = [float(M.call_correct(M.parse_call(p), e)[1]) for p, e in zip(c_preds, expected, strict=True)]
    result.summary, result.per_item = summary, per


def answer_rows(name: str, temperature: float, items: list[EvalItem], answers: list[list[tuple[str, str]]],
                set_name: str | None = None) -> ModelResult:
    """Rows for every sample of every item (the predictions.jsonl shape)."""
    out = ModelResult(name, temperature)
    for item, samples in zip(items, answers, strict=True):
        for s, (text, finish) in enumerate(samples):
            row = {"id": item.id, "model": name, "temperature": temperature, "sample": s, "kind": item.kind, "prompt": item.question,
                   "reference": item.reference, "prediction": text, "finish_reason": finish}
            if set_name is not None:
                row["set"] = set_name
            if item.expected_call is not None:
                row["expected_call"] = item.expected_call
            out.rows.append(row)
    return out


def board_metric(per_item: dict[str, list[float]]) -> str | None:
    """ROUGE-L, else the first per-item metric measured."""
    return "rougeL" if "rougeL" in per_item else next((k for k in per_item if k != "bleu_sentence"), None)


def gains(results: dict[str, ModelResult], metric: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Tuned models ranked by their mean paired gain over base on ``metric``, with bootstrap 95% CIs."""
    key = PER_ITEM.get(metric, metric)
    base = results["base"]
    rows = []
    for name, r in results.items():
        if name == "base" or key not in r.per_item or key not in base.per_item:
            continue
        diffs = [t - b for t, b in zip(r.per_item[key], base.per_item[key], strict=True)]
        rows.append({"model": name, "method": name.split(":", 1)[1], "metric": metric,
                     "score": r.summary.get(metric, M.mean(r.per_item[key])), "base_score": base.summary.get(metric, M.mean(base.per_item[key])),
                     "delta": M.mean(diffs), "ci95": bootstrap_ci(diffs, n, seed)})
    return sorted(rows, key=lambda r: -r["delta"])


def gate(spec: GateSpec, results: dict[str, ModelResult], n: int, seed: int) -> dict[str, Any]:
    """The promotion gate over the best tuned model on ``spec.set``: ``{passed, metric, set, model, gain, ci_low, ci_high, min_gain}``."""
    out: dict[str, Any] = {"passed": False, "metric": spec.metric, "set": spec.set, "model": None, "gain": None,
                           "ci_low": None, "ci_high": None, "min_gain": spec.min_gain, "significant": spec.significant}
    board = gains(results, spec.metric, n, seed)
    if not board:
        measured = sorted(k for k in results["base"].per_item if k != "bleu_sentence")
        out["reason"] = (f"no tuned model was scored on {spec.metric} (measured: {', '.join(measured) or 'nothing'})"
                         if len(results) > 1 else "no tuned model was evaluated")
        return out
    best = board[0]
    out.update(model=best["model"], gain=best["delta"], ci_low=best["ci95"][0], ci_high=best["ci95"][1])
    out["passed"] = best["delta"] >= spec.min_gain and (not spec.significant or best["ci95"][0] > spec.min_gain)
    need = f"gain >= {spec.min_gain:g}" + (f" with the 95% CI above {spec.min_gain:g}" if spec.significant else "")
    out["reason"] = (f"{best['model']} {spec.metric} gain {best['delta']:+.3f} (95% CI {best['ci95'][0]:+.3f} to {best['ci95'][1]:+.3f}) "
                     f"on {spec.set}; the gate needs {need}")
    return out


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def determinism(result: ModelResult) -> float | None:
    """Share of prompts whose samples agree (the same normalised text, or the same function call); None with one sample."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in result.rows:
        by_id.setdefault(row["id"], []).append(row)
    groups = [rows for rows in by_id.values() if len(rows) > 1]
    if not groups:
        return None

    def key(row: dict[str, Any]) -> str:
        if "expected_call" in row:
            call = M.parse_call(row["prediction"])
            return repr((call or {}).get("name")) + repr((call or {}).get("arguments"))
        return _normalised(row["prediction"])

    return sum(len({key(r) for r in rows}) == 1 for rows in groups) / len(groups)


def verdict(board: list[dict[str, Any]], judge: dict[str, Any] | None) -> str:
    """One sentence a plant engineer can read: which method won, and by how much."""
    if not board:
        return "Only the base model was evaluated."
    best = board[0]
    lo, hi = best["ci95"]
    if best["delta"] <= 0:
        return (f"No method beat the base model: the best, {best['method']}, changed {best['metric']} by {best['delta']:+.3f} "
                f"(95% CI {lo:+.3f} to {hi:+.3f}).")
    sure = "a clear gain" if lo > 0 else ("a clear loss" if hi < 0 else "not significant at 95%")
    metric = {"rougeL": "ROUGE-L", "function_call": "function-call accuracy"}.get(best["metric"], best["metric"])
    text = (f"{best['method']} won: {metric} {best['score']:.3f} vs base {best['base_score']:.3f} "
            f"({best['delta']:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}, {sure}).")
    verdicts = (judge or {}).get(best["model"])
    if verdicts and verdicts.get("win_rate") is not None:
        text += f" The judge preferred it over base in {verdicts['win_rate']:.0%} of comparisons."
    return text
