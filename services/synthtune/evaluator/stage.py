"""The evaluate stage: base vs every tuned model on held-out records -> `evaluation` artifact."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from importlib import resources
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.evaluator import metrics as M
from synthtune.evaluator.answers import (
    check_adapter_base,
    expected_call,
    generate_openai,
    generate_transformers,
    generate_vllm,
)
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.records import question_for_record, reference_for_record
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Artifact, ArtifactRef, Store

PRODUCER = "synthtune.evaluator"
REPORTED = ("rouge1", "rouge2", "rougeL", "bleu", "meteor", "semantic")


def probe_items() -> list[dict[str, str]]:
    text = resources.files("synthtune.evaluator").joinpath("data/forgetting_probe.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def bootstrap_ci(diffs: list[float], n: int, seed: int) -> list[float]:
    """95% percentile interval of the mean paired difference."""
    if not diffs or n == 0:
        return [0.0, 0.0]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(n))
    return [means[int(0.025 * (n - 1))], means[int(0.975 * (n - 1))]]


def score_model(spec: PipelineSpec, preds: list[str], refs: list[str], finishes: list[str]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Corpus-level numbers and per-item scores (for the bootstrap) for one model at one temperature."""
    wanted = set(spec.evaluate.metrics)
    per: dict[str, list[float]] = {}
    summary: dict[str, float] = {}
    if "rouge" in wanted:
        per.update(M.rouge(preds, refs))
    if "bleu" in wanted:
        summary["bleu"] = M.bleu_corpus(preds, refs)
        per["bleu_sentence"] = M.bleu_sentences(preds, refs)
    if "meteor" in wanted:
        per["meteor"] = M.meteor(preds, refs)
    if "semantic" in wanted:
        per["semantic"] = M.semantic(preds, refs)
    for key, values in per.items():
        if key != "bleu_sentence":
            summary[key] = M.mean(values)
    summary.update(M.health(preds, finishes))  # cheap, and always worth showing
    summary["n"] = float(len(preds))
    return summary, per


def run(spec: PipelineSpec, inputs: Mapping[str, Any], store: Store, progress: Progress) -> ArtifactRef:
    """Answer the held-out test records with base and tuned models and score them."""
    if inputs.get("prepared") is None:
        raise InvalidInput("evaluate needs the prepared artifact (run prepare first)")
    prepared = store.open(inputs["prepared"])
    adapters: dict[str, Artifact] = {k.split(":", 1)[1]: store.open(v) for k, v in inputs.items() if k.startswith("adapter:") and v is not None}
    ev = spec.evaluate
    for art in adapters.values():
        check_adapter_base(art, spec.train.base_model)
    parents = [prepared.id, *[a.id for a in adapters.values()]]
    config = {"evaluate": ev.model_dump(), "base_model": spec.train.base_model, "system_prompt": spec.generate.system_prompt,
              "adapters": {k: a.id for k, a in adapters.items()}}
    art_id = store.artifact_id("evaluation", parents, config)
    if (cached := store.find(art_id)) is not None:
        progress.note(f"reusing cached {art_id}")
        return cached

    test = list(prepared.iter_jsonl("test.jsonl"))
    skipped = [r["id"] for r in test if not reference_for_record(r).strip()]
    test = [r for r in test if reference_for_record(r).strip()]
    if ev.limit:
        test = test[: ev.limit]
    if not test:
        raise InvalidInput(f"the prepared test split has no record with a reference answer ({len(skipped)} skipped)")
    system = {"role": "system", "content": spec.generate.system_prompt}
    prompts = [[system, {"role": "user", "content": question_for_record(r)}] for r in test]
    probe = probe_items() if ev.forgetting_probe else []
    probe_prompts = [[{"role": "user", "content": p["question"] + " Answer briefly."}] for p in probe]
    refs = [reference_for_record(r) for r in test]
    names = ["base", *[f"tuned:{k}" for k in adapters]]
    model_path = resolve_model(spec.train.base_model, spec.base_dir) if ev.backend == "transformers" else ""
    total = len(names) * (len(prompts) * ev.samples * len(ev.temperatures) + len(probe_prompts))
    progress.start(total, f"answering {len(test)} held-out records with {len(names)} models")

    def answer(batch: list[list[dict[str, Any]]], temperature: float, samples: int) -> dict[str, list[list[tuple[str, str]]]]:
        if ev.backend == "transformers":
            return generate_transformers(spec, model_path, adapters, batch, temperature, samples, progress)
        if ev.backend == "openai":
            return generate_openai(spec, adapters, batch, temperature, samples, progress)
        return generate_vllm(spec, adapters, batch, temperature, samples, progress)

    predictions: list[dict[str, Any]] = []
    by_temp: dict[str, dict[str, Any]] = {}
    per_item: dict[str, dict[str, list[float]]] = {}
    primary = ev.temperatures[0]
    for temp in ev.temperatures:
        samples = 1 if temp == 0 else ev.samples
        outputs = answer(prompts, temp, samples)
        by_temp[f"{temp:g}"] = {}
        for name in names:
            flat_p, flat_r, flat_f = [], [], []
            for rec, ref, sample_list in zip(test, refs, outputs[name], strict=True):
                for s, (text, finish) in enumerate(sample_list):
                    predictions.append({"id": rec["id"], "model": name, "temperature": temp, "sample": s,
                                        "prompt": question_for_record(rec), "reference": ref, "prediction": text, "finish_reason": finish})
                    flat_p.append(text)
                    flat_r.append(ref)
                    flat_f.append(finish)
            summary, per = score_model(spec, flat_p, flat_r, flat_f)
            by_temp[f"{temp:g}"][name] = summary
            if temp == primary:
                per_item[name] = per
    result: dict[str, Any] = {"primary_temperature": primary, "models": by_temp[f"{primary:g}"], "by_temperature": by_temp,
                              "skipped_empty_reference": len(skipped), "test_records": len(test)}
    if "function_call" in ev.metrics:
        episodes = [(i, expected_call(r)) for i, r in enumerate(test)]
        wanted = [(i, e) for i, e in episodes if e is not None]
        if wanted:
            for name in names:
                preds = [p["prediction"] for p in predictions if p["model"] == name and p["temperature"] == primary and p["sample"] == 0]
                result["models"][name].update(M.function_call_accuracy([preds[i] for i, _ in wanted], [e for _, e in wanted]))
    if probe:
        outs = answer(probe_prompts, 0.0, 1)
        result["forgetting"] = {name: sum(p["answer"].lower() in outs[name][i][0][0].lower() for i, p in enumerate(probe)) / len(probe)
                                for name in names}
    result["leaderboard"] = leaderboard(names, per_item, result["models"], ev.bootstrap, ev.seed)
    if ev.judge.enabled and adapters:
        result["judge"] = run_judge(spec, test, refs, predictions, names, primary)
    result["verdict"] = verdict(result)
    with store.create("evaluation", parents, config, PRODUCER, art_id) as w:
        w.write_jsonl("predictions.jsonl", predictions)
        w.write_json("metrics.json", result)
        w.stats.update({"models": names, "test_records": len(test), "verdict": result["verdict"]})
        ref = w.commit()
    progress.note(result["verdict"])
    return ref


def leaderboard(names: list[str], per_item: dict[str, dict[str, list[float]]], models: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """Tuned models ranked by ROUGE-L (else the first per-item metric) gain over base, with bootstrap 95% CIs."""
    base = per_item.get("base", {})
    key = "rougeL" if "rougeL" in base else next((k for k in base if k != "bleu_sentence"), None)
    rows = []
    for name in names[1:]:
        if key is None:
            break
        diffs = [t - b for t, b in zip(per_item[name][key], base[key], strict=True)]
        rows.append({"model": name, "method": name.split(":", 1)[1], "metric": key, "score": models[name].get(key, 0.0),
                     "delta": M.mean(diffs), "ci95": bootstrap_ci(diffs, n, seed)})
    return sorted(rows, key=lambda r: -r["delta"])


def run_judge(spec: PipelineSpec, test: list[dict[str, Any]], refs: list[str], predictions: list[dict[str, Any]], names: list[str], temp: float) -> dict[str, Any]:
    from synthtune.evaluator.judge import judge_pairs, tally
    from synthtune.llm.chat import make_backend

    backend = make_backend(spec.evaluate.judge, spec.base_dir)
    first = {(p["model"], p["id"]): p["prediction"] for p in predictions if p["temperature"] == temp and p["sample"] == 0}
    out = {}
    for name in names[1:]:
        items = [{"question": question_for_record(r), "reference": ref, "tuned": first[(name, r["id"])], "base": first[("base", r["id"])]}
                 for r, ref in zip(test, refs, strict=True)]
        out[name] = tally(judge_pairs(backend, items))
    backend.close()
    return out


def verdict(result: dict[str, Any]) -> str:
    """One sentence a plant engineer can read: which method won, and by how much."""
    board = result.get("leaderboard") or []
    if not board:
        return "Only the base model was evaluated."
    best = board[0]
    lo, hi = best["ci95"]
    if best["delta"] <= 0:
        return (f"No method beat the base model: the best, {best['method']}, changed {best['metric']} by {best['delta']:+.3f} "
                f"(95% CI {lo:+.3f} to {hi:+.3f}).")
    sure = "a clear gain" if lo > 0 else ("a clear loss" if hi < 0 else "not significant at 95%")
    metric = {"rougeL": "ROUGE-L"}.get(best["metric"], best["metric"])
    text = (f"{best['method']} won: {metric} {best['score']:.3f} vs base {result['models']['base'].get(best['metric'], 0.0):.3f} "
            f"({best['delta']:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}, {sure}).")
    judge = (result.get("judge") or {}).get(best["model"])
    if judge:
        text += f" The judge preferred it over base in {judge['win_rate']:.0%} of comparisons."
    return text
