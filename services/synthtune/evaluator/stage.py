"""The evaluate stage: base vs every tuned model on held-out records -> `evaluation` artifact."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from importlib import resources
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.evaluator import answers as A
from synthtune.evaluator import metrics as M
from synthtune.evaluator.answers import Answers, Prompt, check_adapter_base
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.records import SKIP_REASONS, EvalItem, evaluation_item
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Artifact, ArtifactRef, Store

PRODUCER = "synthtune.evaluator"
REPORTED = ("rouge1", "rouge2", "rougeL", "bleu", "meteor", "semantic")
RULES_VERSION = 2  # bump when what is asked or how it is scored changes, so cached evaluations are not reused


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


def score_model(spec: PipelineSpec, preds: list[str], refs: list[str], finishes: list[str]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Corpus-level numbers and per-item scores (for the bootstrap) for one model at one temperature."""
    wanted = set(spec.evaluate.metrics)
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
    for key, values in per.items():
        if key != "bleu_sentence":
            summary[key] = M.mean(values)
    summary.update(M.health(preds, finishes))  # cheap, and always worth showing
    summary["n"] = len(preds)
    return summary, per


def score_calls(preds: list[str], expected: list[dict[str, Any]]) -> tuple[dict[str, Any], list[float]]:
    """Function-call accuracy over episode answers, and per answer 1.0 when name and arguments are right."""
    summary: dict[str, Any] = dict(M.function_call_accuracy(preds, expected))
    summary["function_calls"] = len(preds)
    return summary, [float(M.call_correct(M.parse_call(p), e)[1]) for p, e in zip(preds, expected, strict=True)]


def event_commands(spec: PipelineSpec) -> list[Any]:
    """The commands the event_scenario methods were configured with: they were offered as tools in training."""
    found: list[Any] = []
    for method in spec.generate.methods:
        if method.name == "event_scenario":
            found += [c for c in method.options.get("commands", []) if c not in found]
    return found


def select_items(spec: PipelineSpec, records: list[dict[str, Any]]) -> tuple[list[EvalItem], dict[str, list[str]]]:
    """The records evaluation scores (records.evaluation_item's rule), and the skipped ids by reason."""
    ev = spec.evaluate
    extra = event_commands(spec)
    items: list[EvalItem] = []
    skipped: dict[str, list[str]] = {}
    for record in records:
        item, reason = evaluation_item(record, spec.generate.system_prompt, "function_call" in ev.metrics, extra)
        if item is not None:
            items.append(item)
        else:
            skipped.setdefault(str(reason), []).append(str(record.get("id")))
    return items[: ev.limit] if ev.limit else items, skipped


def run(spec: PipelineSpec, inputs: Mapping[str, Any], store: Store, progress: Progress) -> ArtifactRef:
    """Answer the held-out test records with base and tuned models and score them."""
    if inputs.get("prepared") is None:
        raise InvalidInput("evaluate needs the prepared artifact (run prepare first)")
    prepared = store.open(inputs["prepared"])
    adapters: dict[str, Artifact] = {k.split(":", 1)[1]: store.open(v) for k, v in inputs.items() if k.startswith("adapter:") and v is not None}
    ev = spec.evaluate
    for art in adapters.values():
        check_adapter_base(art, spec.train.base_model, spec.base_dir)
    parents = [prepared.id, *[a.id for a in adapters.values()]]
    config = {"evaluate": ev.model_dump(), "base_model": spec.train.base_model, "system_prompt": spec.generate.system_prompt,
              "adapters": {k: a.id for k, a in adapters.items()}, "event_commands": event_commands(spec), "rules": RULES_VERSION}
    art_id = store.artifact_id("evaluation", parents, config)
    if (cached := store.find(art_id)) is not None:
        progress.note(f"reusing cached {art_id}")
        return cached

    items, skipped = select_items(spec, list(prepared.iter_jsonl("test.jsonl")))
    if not items:
        why = ", ".join(f"{len(ids)} {reason} ({SKIP_REASONS.get(reason, reason)})" for reason, ids in skipped.items()) or "it is empty"
        hint = " (add function_call to evaluate.metrics to score event-log episodes)" if "function_call_not_measured" in skipped else ""
        raise InvalidInput(f"the prepared test split has no record evaluation can score: {why}{hint}")
    prompts = [Prompt([{"role": "system", "content": it.system}, {"role": "user", "content": it.question}], it.tools) for it in items]
    probe = probe_items() if ev.forgetting_probe else []
    probe_prompts = [Prompt([{"role": "user", "content": p["question"] + " Answer briefly."}]) for p in probe]
    names = ["base", *[f"tuned:{k}" for k in adapters]]
    model_path = resolve_model(spec.train.base_model, spec.base_dir, store) if ev.backend in ("transformers", "vllm") else ""
    answers_per_prompt = sum(1 if t == 0 else ev.samples for t in ev.temperatures)
    progress.start(len(names) * (len(prompts) * answers_per_prompt + len(probe_prompts)),
                   f"answering {len(items)} held-out records with {len(names)} models")

    def answer(batch: list[Prompt], temperature: float, samples: int) -> Answers:
        return A.generate_answers(spec, model_path, adapters, batch, temperature, samples, progress)

    predictions: list[dict[str, Any]] = []
    by_temp: dict[str, dict[str, Any]] = {}
    per_item: dict[str, dict[str, list[float]]] = {}
    primary = ev.temperatures[0]
    for temp in ev.temperatures:
        outputs = answer(prompts, temp, 1 if temp == 0 else ev.samples)
        by_temp[f"{temp:g}"] = {}
        for name in names:
            ref_p, ref_r, ref_f, call_p, call_e, all_p, all_f = [], [], [], [], [], [], []
            for item, sample_list in zip(items, outputs[name], strict=True):
                for s, (text, finish) in enumerate(sample_list):
                    row = {"id": item.id, "model": name, "temperature": temp, "sample": s, "kind": item.kind, "prompt": item.question,
                           "reference": item.reference, "prediction": text, "finish_reason": finish}
                    if item.expected_call is not None:
                        row["expected_call"] = item.expected_call
                        call_p.append(text)
                        call_e.append(item.expected_call)
                    else:
                        ref_p.append(text)
                        ref_r.append(item.reference)
                        ref_f.append(finish)
                    all_p.append(text)
                    all_f.append(finish)
                    predictions.append(row)
            summary, per = score_model(spec, ref_p, ref_r, ref_f)
            summary.update(M.health(all_p, all_f))  # health covers every answer, episodes too
            if call_e:
                calls, correct = score_calls(call_p, call_e)
                summary.update(calls)
                per["function_call"] = correct
            by_temp[f"{temp:g}"][name] = summary
            if temp == primary:
                per_item[name] = per
    counts = {reason: len(ids) for reason, ids in skipped.items()}
    result: dict[str, Any] = {"primary_temperature": primary, "models": by_temp[f"{primary:g}"], "by_temperature": by_temp,
                              "skipped_empty_reference": counts.get("empty_reference", 0), "skipped": counts,
                              "skipped_ids": {reason: ids[:50] for reason, ids in skipped.items()},
                              "test_records": len(items), "reference_records": sum(it.kind == "reference" for it in items),
                              "function_call_records": sum(it.kind == "function_call" for it in items)}
    if probe:
        outs = answer(probe_prompts, 0.0, 1)
        result["forgetting"] = {name: sum(p["answer"].lower() in outs[name][i][0][0].lower() for i, p in enumerate(probe)) / len(probe)
                                for name in names}
    result["leaderboard"] = leaderboard(names, per_item, result["models"], ev.bootstrap, ev.seed)
    scored = [it for it in items if it.kind == "reference"]
    if scored and ((ev.judge.enabled and adapters) or ev.judge.rubric):
        result.update(run_judge(spec, scored, predictions, names, primary))
    result["verdict"] = verdict(result)
    with store.create("evaluation", parents, config, PRODUCER, art_id) as w:
        w.write_jsonl("predictions.jsonl", predictions)
        w.write_json("metrics.json", result)
        w.stats.update({"models": names, "test_records": len(items), "skipped": counts, "verdict": result["verdict"]})
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
        rows.append({"model": name, "method": name.split(":", 1)[1], "metric": key, "score": models[name].get(key, M.mean(per_item[name][key])),
                     "base_score": models.get("base", {}).get(key, M.mean(base[key])), "delta": M.mean(diffs), "ci95": bootstrap_ci(diffs, n, seed)})
    return sorted(rows, key=lambda r: -r["delta"])


def run_judge(spec: PipelineSpec, items: list[EvalItem], predictions: list[dict[str, Any]], names: list[str], temp: float) -> dict[str, Any]:
    """Pairwise verdicts (``judge``) and rubric scores (``judge_scores``) on the first answer at ``temp``; the judge
    sees the question, the reference and anonymous answers, never a model's name."""
    from synthtune.evaluator.judge import judge_pairs, rubric_scores, summarize_scores, tally
    from synthtune.llm.chat import make_backend

    ev = spec.evaluate
    first = {(p["model"], p["id"]): p["prediction"] for p in predictions if p["temperature"] == temp and p["sample"] == 0}
    out: dict[str, Any] = {}
    backend = make_backend(ev.judge, spec.base_dir)
    try:
        if ev.judge.enabled and len(names) > 1:
            out["judge"] = {}
            for name in names[1:]:
                pairs = [{"question": it.question, "reference": it.reference, "tuned": first[(name, it.id)], "base": first[("base", it.id)]}
                         for it in items]
                out["judge"][name] = tally(judge_pairs(backend, pairs))
        if ev.judge.rubric:
            out["judge_scores"] = {}
            for name in names:
                answers = [{"question": it.question, "reference": it.reference, "answer": first[(name, it.id)]} for it in items]
                out["judge_scores"][name] = summarize_scores(rubric_scores(backend, answers))
    finally:
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
    metric = {"rougeL": "ROUGE-L", "function_call": "function-call accuracy"}.get(best["metric"], best["metric"])
    text = (f"{best['method']} won: {metric} {best['score']:.3f} vs base {best['base_score']:.3f} "
            f"({best['delta']:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}, {sure}).")
    judge = (result.get("judge") or {}).get(best["model"])
    if judge and judge.get("win_rate") is not None:
        text += f" The judge preferred it over base in {judge['win_rate']:.0%} of comparisons."
    return text
