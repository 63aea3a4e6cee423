"""The generate stage: prepared records -> teacher rounds -> filters -> a `synthetic` artifact."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.generator.filters import Decontaminator, check_example, near_duplicate_questions
from synthtune.generator.methods import REGISTRY, Item, Method
from synthtune.generator.shards import ShardLog
from synthtune.llm.chat import ChatBackend, make_backend
from synthtune.progress import Progress
from synthtune.records import field_text, question_for_record, reference_for_record
from synthtune.spec.generate import MethodSpec, ModelEndpointSpec
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Artifact, ArtifactRef, Store

PRODUCER = "synthtune.generator"
CHUNK = 32


def teacher_signature(t: ModelEndpointSpec) -> dict[str, Any]:
    """What makes two teachers' answers differ (never the key itself)."""
    return {k: getattr(t, k) for k in ("backend", "model", "base_url", "temperature", "top_p", "max_tokens", "seed")}


def find_method(spec: PipelineSpec, key: str) -> MethodSpec:
    for m in spec.generate.methods:
        if m.key == key:
            return m
    raise InvalidInput(f"generate: no method {key!r} in the spec (methods: {', '.join(spec.method_keys())})")


def select_records(prepared: Artifact, method: Method, mspec: MethodSpec, limit: int | None, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train records this method can use, and rejects for those missing its required fields."""
    rows = [r for r in prepared.iter_jsonl("train.jsonl") if r.get("type", "record") in method.record_types]
    if not rows:
        raise InvalidInput(
            f"method {mspec.key!r} ({method.name}) needs records of type {', '.join(method.record_types)}; "
            f"the prepared train split has none (check source.paths and source.kind)"
        )
    usable, rejects = [], []
    for r in rows:
        missing = [f for f in method.required_fields if not field_text(r, f)]
        (rejects.append({"id": r["id"], "reason": f"missing field(s) {', '.join(missing)} needed by {method.name}"}) if missing else usable.append(r))
    if not usable:
        raise InvalidInput(f"method {mspec.key!r} ({method.name}) needs fields {', '.join(method.required_fields)}; no train record has them all")
    if limit is not None and len(usable) > limit:
        rng = random.Random(seed)
        usable = sorted(rng.sample(usable, limit), key=lambda r: r["id"])
    return usable, rejects


def _item_key(record: dict[str, Any], mspec: MethodSpec, version: str, teacher: dict[str, Any], variant: dict[str, Any]) -> str:
    payload = [record["id"], record.get("fields"), record.get("text"), mspec.name, mspec.options, version, teacher, variant]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _generate_chunk(items: list[Item], method: Method, backend: ChatBackend, system_prompt: str, progress: Progress) -> list[dict[str, Any]]:
    for round_name in method.rounds:
        live = [it for it in items if it.error is None]
        if not live:
            break
        requests = [method.request(round_name, it) for it in live]
        for it, res in zip(live, backend.complete(requests), strict=True):
            it.prompt_tokens += res.prompt_tokens
            it.completion_tokens += res.completion_tokens
            if not res.ok:
                it.error = f"{round_name}: teacher failed: {res.error}"
            else:
                method.accept(round_name, it, res)
        progress.check_cancelled()
    entries = []
    for it in items:
        entry: dict[str, Any] = {"key": it.key, "record_id": it.record["id"], "variant": it.variant,
                                 "tokens": [it.prompt_tokens, it.completion_tokens]}
        if it.error is None:
            entry.update(status="ok", messages=method.messages(it, system_prompt), outputs=it.outputs)
        else:
            entry.update(status="failed", reason=it.error)
        entries.append(entry)
    return entries


def run(spec: PipelineSpec, inputs: Mapping[str, Any], store: Store, progress: Progress, method: str) -> ArtifactRef:
    """Generate one method's synthetic chat examples from the prepared train split."""
    mspec = find_method(spec, method)
    if inputs.get("prepared") is None:
        raise InvalidInput("generate needs the prepared artifact (run prepare first)")
    prepared = store.open(inputs["prepared"])
    impl = REGISTRY[mspec.name](mspec.options)
    gen = spec.generate
    teacher = teacher_signature(gen.teacher)
    config = {"method": mspec.model_dump(), "prompt_version": impl.version, "teacher": teacher, "filters": gen.filters.model_dump(),
              "limit": gen.limit, "system_prompt": gen.system_prompt, "seed": gen.seed}
    art_id = store.artifact_id("synthetic", [prepared.id], config)
    if (cached := store.find(art_id)) is not None:
        progress.note(f"reusing cached {art_id}")
        return cached

    records, rejects = select_records(prepared, impl, mspec, gen.limit, gen.seed)
    rng = random.Random(gen.seed)
    items = [Item(_item_key(r, mspec, impl.version, teacher, v), r, v) for r in records for v in impl.variants(r, mspec.pairs_per_record, rng)]
    log = ShardLog(store, art_id)
    done = {k: e for k, e in log.load().items() if e["status"] == "ok"}
    pending = [it for it in items if it.key not in done]
    progress.start(len(items), f"generating {mspec.key} with {gen.teacher.model}")
    progress.advance(len(items) - len(pending))
    if done:
        progress.note(f"resuming: {len(done)} of {len(items)} examples already generated")
    results: dict[str, dict[str, Any]] = dict(done)
    if pending:
        backend = make_backend(gen.teacher, spec.base_dir)
        try:
            for start in range(0, len(pending), CHUNK):
                chunk = pending[start:start + CHUNK]
                entries = _generate_chunk(chunk, impl, backend, gen.system_prompt, progress)
                log.append(entries)  # durable before counting: a kill now loses nothing finished
                results.update({e["key"]: e for e in entries})
                ok = sum(1 for e in results.values() if e["status"] == "ok")
                progress.advance(len(chunk))
                progress.note(f"{ok} ok, {sum(1 for e in results.values() if e['status'] != 'ok')} failed")
        finally:
            backend.close()

    ordered = [results[it.key] for it in items]
    examples, more_rejects = _filter(spec, prepared, impl, mspec, ordered, teacher)
    rejects += more_rejects
    if not examples:
        progress.note(f"method {mspec.key} produced no usable example ({len(rejects)} rejected); see rejects.jsonl")
    tokens_in = sum(e["tokens"][0] for e in ordered)
    tokens_out = sum(e["tokens"][1] for e in ordered)
    t = gen.teacher
    cost = None
    if t.price_per_1k_input is not None and t.price_per_1k_output is not None:
        cost = round(tokens_in / 1000 * t.price_per_1k_input + tokens_out / 1000 * t.price_per_1k_output, 4)
    stats = {
        "method": mspec.key, "generator": mspec.name, "records": len(examples), "rejected": len(rejects),
        "input_records": len(records), "items": len(items), "reasons": dict(Counter(r["reason"].split(":")[0] for r in rejects)),
        "prompt_tokens": tokens_in, "completion_tokens": tokens_out, "cost": cost, "teacher": t.model, "prompt_version": impl.version,
    }
    with store.create("synthetic", [prepared.id], config, PRODUCER, art_id) as w:
        w.write_jsonl("data.jsonl", examples)
        w.write_jsonl("rejects.jsonl", rejects)
        w.write_json("stats.json", stats)
        if impl.name == "event_scenario":
            w.write_json("tools.json", impl.tools())  # type: ignore[attr-defined]
        w.stats.update(stats)
        ref = w.commit()
    log.clear()
    progress.note(f"{mspec.key}: {len(examples)} examples, {len(rejects)} rejected")
    return ref


def _filter(spec: PipelineSpec, prepared: Artifact, impl: Method, mspec: MethodSpec, entries: list[dict[str, Any]],
            teacher: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    f = spec.generate.filters
    decon = None
    if f.decontaminate:
        test = list(prepared.iter_jsonl("test.jsonl"))
        decon = Decontaminator([question_for_record(r) + " " + reference_for_record(r) + " " + (r.get("text") or "") for r in test], f.ngram)
    examples: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for e in entries:
        if e["status"] != "ok":
            rejects.append({"id": e["key"], "record_id": e["record_id"], "reason": e["reason"]})
            continue
        example = {"messages": e["messages"], "provenance": {
            "source_ids": [e["record_id"]], "method": mspec.key, "generator": impl.name, "teacher": teacher["model"],
            "teacher_backend": teacher["backend"], "prompt_version": impl.version, "temperature": teacher["temperature"],
            "seed": spec.generate.seed, "variant": e["variant"], "key": e["key"]}}
        prompts = [m["content"] for m in e["messages"] if m["role"] in ("system",)]
        reason = check_example(example, f, prompts, decon)
        if reason:
            rejects.append({"id": e["key"], "record_id": e["record_id"], "reason": reason})
        else:
            examples.append(example)
    if f.dedup_near is not False and len(examples) > 1:
        questions = [next(m["content"] for m in ex["messages"] if m["role"] == "user") for ex in examples]
        groups = near_duplicate_questions(questions, float(f.dedup_near))
        keep = []
        for i, ex in enumerate(examples):
            if groups[i] != i:
                rejects.append({"id": ex["provenance"]["key"], "record_id": ex["provenance"]["source_ids"][0],
                                "reason": f"near duplicate question of {examples[groups[i]]['provenance']['key']}"})
            else:
                keep.append(ex)
        examples = keep
    if f.judge and examples:
        from synthtune.generator.judge import score_examples

        backend = make_backend(spec.generate.teacher, spec.base_dir)
        scores = score_examples(backend, examples)
        keep = []
        for ex, score in zip(examples, scores, strict=True):
            if score is None or score < f.min_score:
                rejects.append({"id": ex["provenance"]["key"], "record_id": ex["provenance"]["source_ids"][0], "score": score,
                                "reason": "judge score unreadable" if score is None else f"judge score {score:g} below {f.min_score:g}"})
            else:
                ex["provenance"]["judge_score"] = score
                keep.append(ex)
        examples = keep
    return examples, rejects
