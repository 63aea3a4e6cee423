"""The evaluate stage: base vs every tuned model on held-out records and the user's sets -> `evaluation` artifact.

A small pipeline: gather the sets to ask (the test split, then ``evaluate.sets``), answer them all
with every model in one pass per temperature, score each model's result, then compute the
leaderboard, the gate, determinism and the judge from those results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.evalsets import load_sets
from synthtune.evaluator import answers as A
from synthtune.evaluator import scoring as S
from synthtune.evaluator.answers import Prompt, check_adapter_base
from synthtune.llm.models import resolve_model
from synthtune.progress import Progress
from synthtune.records import SKIP_REASONS, EvalItem, evaluation_item, field_text, question_for_record
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Artifact, ArtifactRef, Store

PRODUCER = "synthtune.evaluator"
RULES_VERSION = 3  # bump when what is asked or how it is scored changes, so cached evaluations are not reused


@dataclass
class EvalSet:
    name: str  # "test" for the held-out split
    items: list[EvalItem]


def probe_items() -> list[dict[str, str]]:
    text = resources.files("synthtune.evaluator").joinpath("data/forgetting_probe.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


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


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def check_not_in_training(name: str, items: list[EvalItem], train: list[dict[str, Any]]) -> int:
    """Items that are training records: the same question as evaluation asks of one, or one's problem (four words
    or more) with its solution in the reference. A set made only of them is bad input."""
    questions = {_norm(question_for_record(r)) for r in train}
    pairs = {(_norm(field_text(r, "problem")), _norm(field_text(r, "solution"))) for r in train}
    pairs = {(p, s) for p, s in pairs if len(p.split()) >= 4 and s}

    def inside(it: EvalItem) -> bool:
        q, ref = _norm(it.question), _norm(it.reference)
        return q in questions or any(p in q and s in ref for p, s in pairs)

    count = sum(1 for it in items if inside(it))
    if count == len(items):
        raise InvalidInput(f"evaluate.sets[{name}]: all {len(items)} items are inside the training data (their question and "
                           "reference come from prepared training records); it would measure memory, not skill")
    return count


def base_model_path(spec: PipelineSpec, store: Store) -> str:
    """The base model's local folder for in-process backends; served backends name it instead."""
    return resolve_model(spec.train.base_model, spec.base_dir, store) if spec.evaluate.backend in ("transformers", "vllm") else ""


def answer_all(spec: PipelineSpec, adapters: dict[str, Artifact], sets: list[EvalSet], model_path: str,
               progress: Progress) -> dict[float, dict[str, dict[str, S.ModelResult]]]:
    """temperature -> set -> model -> scored result; every set is answered in one pass per temperature and model."""
    ev = spec.evaluate
    items = [(s.name, it) for s in sets for it in s.items]
    prompts = [Prompt([{"role": "system", "content": it.system}, {"role": "user", "content": it.question}], it.tools) for _, it in items]
    out: dict[float, dict[str, dict[str, S.ModelResult]]] = {}
    for temp in ev.temperatures:
        answers = A.generate_answers(spec, model_path, adapters, prompts, temp, 1 if temp == 0 else ev.samples, progress)
        out[temp] = {}
        for s in sets:
            picked = [i for i, (name, _) in enumerate(items) if name == s.name]
            for model, per_prompt in answers.items():
                result = S.answer_rows(model, temp, s.items, [per_prompt[i] for i in picked], None if s.name == "test" else s.name)
                S.score(ev, result)
                out[temp].setdefault(s.name, {})[model] = result
    return out


def run(spec: PipelineSpec, inputs: Mapping[str, Any], store: Store, progress: Progress) -> ArtifactRef:
    """Answer the held-out test records and the user's sets with base and tuned models and score them."""
    if inputs.get("prepared") is None:
        raise InvalidInput("evaluate needs the prepared artifact (run prepare first)")
    prepared = store.open(inputs["prepared"])
    adapters: dict[str, Artifact] = {k.split(":", 1)[1]: store.open(v) for k, v in inputs.items() if k.startswith("adapter:") and v is not None}
    ev = spec.evaluate
    for art in adapters.values():
        check_adapter_base(art, spec.train.base_model, spec.base_dir)
    user_sets = load_sets(spec)
    parents = [prepared.id, *[a.id for a in adapters.values()]]
    config = {"evaluate": ev.model_dump(), "base_model": spec.train.base_model, "system_prompt": spec.generate.system_prompt,
              "adapters": {k: a.id for k, a in adapters.items()}, "event_commands": event_commands(spec), "rules": RULES_VERSION,
              "sets": {name: [[it.question, it.reference, it.expected_call] for it in items] for name, items in user_sets.items()}}
    art_id = store.artifact_id("evaluation", parents, config)
    if (cached := store.find(art_id)) is not None:
        progress.note(f"reusing cached {art_id}")
        return cached

    items, skipped = select_items(spec, list(prepared.iter_jsonl("test.jsonl")))
    if not items:
        why = ", ".join(f"{len(ids)} {reason} ({SKIP_REASONS.get(reason, reason)})" for reason, ids in skipped.items()) or "it is empty"
        hint = " (add function_call to evaluate.metrics to score event-log episodes)" if "function_call_not_measured" in skipped else ""
        raise InvalidInput(f"the prepared test split has no record evaluation can score: {why}{hint}")
    train = list(prepared.iter_jsonl("train.jsonl"))
    inside = {name: check_not_in_training(name, its, train) for name, its in user_sets.items()}
    sets = [EvalSet("test", items), *[EvalSet(n, its) for n, its in user_sets.items()]]
    names = ["base", *[f"tuned:{k}" for k in adapters]]
    probe = probe_items() if ev.forgetting_probe else []
    per_prompt = sum(1 if t == 0 else ev.samples for t in ev.temperatures)
    progress.start(len(names) * (sum(len(s.items) for s in sets) * per_prompt + len(probe)),
                   f"answering {len(items)} held-out records{f' and {len(sets) - 1} sets' if len(sets) > 1 else ''} with {len(names)} models")
    model_path = base_model_path(spec, store)
    results = answer_all(spec, adapters, sets, model_path, progress)
    result = summarise(spec, results, skipped, items, inside)
    if probe:
        prompts = [Prompt([{"role": "user", "content": p["question"] + " Answer briefly."}]) for p in probe]
        outs = A.generate_answers(spec, model_path, adapters, prompts, 0.0, 1, progress)
        result["forgetting"] = {n: sum(p["answer"].lower() in outs[n][i][0][0].lower() for i, p in enumerate(probe)) / len(probe) for n in names}
    primary = results[ev.temperatures[0]]
    scored = [it for it in items if it.kind == "reference"]
    if scored and ((ev.judge.enabled and adapters) or ev.judge.rubric):
        from synthtune.evaluator.judge import run_judge

        result.update(run_judge(spec, scored, primary["test"]))
    result["verdict"] = S.verdict(result["leaderboard"], result.get("judge"))
    predictions = [row for sets_ in results.values() for models in sets_.values() for r in models.values() for row in r.rows]
    with store.create("evaluation", parents, config, PRODUCER, art_id) as w:
        w.write_jsonl("predictions.jsonl", predictions)
        w.write_json("metrics.json", result)
        w.stats.update({"models": names, "test_records": len(items), "skipped": result["skipped"], "verdict": result["verdict"],
                        "gate": result.get("gate")})
        ref = w.commit()
    progress.note(result["verdict"])
    return ref


def summarise(spec: PipelineSpec, results: dict[float, dict[str, dict[str, S.ModelResult]]], skipped: dict[str, list[str]],
              items: list[EvalItem], inside: dict[str, int]) -> dict[str, Any]:
    """metrics.json from the scored results: models, sweep, sets, leaderboard, gate, determinism."""
    ev = spec.evaluate
    primary_temp = ev.temperatures[0]
    primary = results[primary_temp]
    counts = {reason: len(ids) for reason, ids in skipped.items()}
    test = primary["test"]
    board_key = S.board_metric(test["base"].per_item)
    out: dict[str, Any] = {
        "primary_temperature": primary_temp, "models": {n: r.summary for n, r in test.items()},
        "by_temperature": {f"{t:g}": {n: r.summary for n, r in by_set["test"].items()} for t, by_set in results.items()},
        "skipped_empty_reference": counts.get("empty_reference", 0), "skipped": counts,
        "skipped_ids": {reason: ids[:50] for reason, ids in skipped.items()},
        "test_records": len(items), "reference_records": sum(it.kind == "reference" for it in items),
        "function_call_records": sum(it.kind == "function_call" for it in items),
        "leaderboard": S.gains(test, board_key, ev.bootstrap, ev.seed) if board_key else [],
        "sets": {}}
    for name, models in primary.items():
        if name == "test":
            continue
        key = S.board_metric(models["base"].per_item)
        out["sets"][name] = {"n": len({row["id"] for row in models["base"].rows}), "inside_training": inside.get(name, 0),
                             "metrics": {n: r.summary for n, r in models.items()},
                             "leaderboard": S.gains(models, key, ev.bootstrap, ev.seed) if key else []}
    sampled = next((t for t in ev.temperatures if t > 0 and ev.samples > 1), None)
    if sampled is not None:
        out["determinism"] = {n: S.determinism(r) for n, r in results[sampled]["test"].items()}
        out["determinism_temperature"] = sampled
    if ev.gate is not None:
        out["gate"] = S.gate(ev.gate, primary[ev.gate.set], ev.bootstrap, ev.seed)
    return out
