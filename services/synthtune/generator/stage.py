"""The generate stage: prepared training records -> one method's synthetic chat dataset (kind ``synthetic``).

Reads top to bottom: pick the method and records, reuse what earlier runs finished, ask the
teacher for the rest shard by shard, filter, write ``data.jsonl``, ``rejects.jsonl`` and
``stats.json``. Every input record ends generated, filtered with a reason, or failed with a reason.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from typing import Any

from synthtune.errors import InvalidInput, RetryableError
from synthtune.evalsets import decontamination_records
from synthtune.generator.driver import run_plans
from synthtune.generator.filters import apply_filters
from synthtune.generator.judge import judge_plan
from synthtune.generator.methods import Candidate, GenContext, Method, Plan, get_method
from synthtune.generator.shards import Outcome, ShardCache
from synthtune.generator.templates import PromptSet, load_prompts
from synthtune.llm.backends import describe
from synthtune.llm.chat import ChatBackend, make_backend
from synthtune.progress import NULL_PROGRESS, Progress
from synthtune.spec import GenerateSpec, MethodSpec, PipelineSpec
from synthtune.store import ArtifactRef, Store
from synthtune.store.artifacts import canonical_json

WORK_PREFIX = "work/generate"
# Endpoint settings that change how we talk to the teacher (or what it costs), not what it writes.
_OPERATIONAL = {"concurrency", "timeout_s", "max_retries", "backoff_s", "api_key_env", "price_per_1k_input", "price_per_1k_output"}


def _digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:20]


def pick_method(gen: GenerateSpec, key: str | None) -> MethodSpec:
    if key is None:
        return gen.methods[0]
    for m in gen.methods:
        if m.key == key:
            return m
    raise InvalidInput(f"generate: no method {key!r} in the pipeline (methods: {', '.join(m.key for m in gen.methods)})")


def select_records(rows: list[dict[str, Any]], method: Method, gen: GenerateSpec, limit: int | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """This method's record type, at most ``limit`` of them, sampled by seed (stable across runs)."""
    mine = [r for r in rows if (r.get("type") or "record") == method.record_type]
    others = Counter(str(r.get("type") or "record") for r in rows if (r.get("type") or "record") != method.record_type)
    if limit is not None and len(mine) > limit:
        chosen = set(sorted(range(len(mine)), key=lambda i: _digest([gen.seed, mine[i].get("id")]))[:limit])
        mine = [r for i, r in enumerate(mine) if i in chosen]
    return mine, dict(others)


def check_fields(method: Method, records: list[dict[str, Any]], prepared_id: str, other_types: dict[str, int]) -> dict[str, list[str]]:
    """Missing inputs per record id; bad input (exit 2) when no record has what the method needs."""
    if not records:
        found = ", ".join(f"{n} {t!r}" for t, n in other_types.items()) or "no records"
        raise InvalidInput(f"method {method.name} needs prepared records of type {method.record_type!r}, "
                           f"but {prepared_id}/train.jsonl has {found}")
    missing = {r["id"]: gaps for r in records if (gaps := method.missing(r))}
    absent = sorted({g for gaps in missing.values() for g in gaps if all(g in missing.get(r["id"], []) for r in records)})
    if absent:
        examples = [f"record {rid}: lacks {', '.join(g)}" for rid, g in list(missing.items())[:5]]
        raise InvalidInput(f"method {method.name} needs the fields {', '.join(absent)}, which no record in "
                           f"{prepared_id}/train.jsonl has (map them under source.fields)", examples)
    return missing


def record_plan(method: Method, judge: PromptSet | None, record: dict[str, Any]) -> Plan:
    try:
        candidates = yield from method.plan(record)
    finally:
        method.release(record["id"])  # its candidates carry what they need
    if judge is not None:
        candidates = yield from judge_plan(judge, candidates, record)
    return candidates


def run(spec: PipelineSpec, inputs: dict[str, ArtifactRef | str], store: Store, progress: Progress = NULL_PROGRESS,
        method: str | None = None, teacher: ChatBackend | None = None) -> ArtifactRef:
    """Generate one method's synthetic dataset from ``inputs["prepared"]``; ``teacher`` overrides the spec's."""
    gen = spec.generate
    method_spec = pick_method(gen, method)
    if "prepared" not in inputs:
        raise InvalidInput("generate needs inputs['prepared'], a prepared artifact")
    prepared = store.open(inputs["prepared"])
    if prepared.kind != "prepared":
        raise InvalidInput(f"generate: {prepared.id} is a {prepared.kind!r} artifact, not 'prepared'")
    prompts = load_prompts(method_spec.name, method_spec.prompt_version)
    judge_prompts = load_prompts("judge") if gen.filters.judge else None
    impl = get_method(method_spec.name)(GenContext(gen, method_spec, prompts))
    limit = method_spec.limit if method_spec.limit is not None else gen.limit
    teacher_spec = gen.teacher.model_dump(exclude=_OPERATIONAL) if impl.uses_teacher else None
    teacher_name = (getattr(teacher, "name", None) or describe(gen.teacher)) if impl.uses_teacher else "none (field template)"
    # What the teacher is asked depends on these alone; filters and limit only decide what is kept.
    work = {"method": [method_spec.name, method_spec.pairs_per_record, method_spec.options, prompts.version],
            "teacher": teacher_spec, "seed": gen.seed, "judge": judge_prompts.version if judge_prompts else None}
    config = {**work, "label": method_spec.key, "filters": gen.filters.model_dump(), "limit": limit,
              "system_prompt": gen.system_prompt, "price": [gen.teacher.price_per_1k_input, gen.teacher.price_per_1k_output]}
    art_id = store.artifact_id("synthetic", [prepared.id], config)
    if found := store.find(art_id):
        progress.note(f"generate {method_spec.key}: reusing {art_id}")
        return found

    records, other_types = select_records(list(prepared.iter_jsonl("train.jsonl")), impl, gen, limit)
    missing = check_fields(impl, records, prepared.id, other_types)
    work_key = _digest(work)
    shards = ShardCache(store, f"{WORK_PREFIX}/{work_key}")
    record_key = {r["id"]: _digest([work_key, r]) for r in records}
    outcomes: dict[str, Outcome] = {}
    saved = shards.load()
    for r in records:
        if record_key[r["id"]] in saved:
            outcomes[record_key[r["id"]]] = saved[record_key[r["id"]]]
    todo = [r for r in records if r["id"] not in missing and record_key[r["id"]] not in outcomes]

    progress.start(len(records), f"generate {method_spec.key}")
    progress.advance(len(records) - len(todo))
    if len(records) > len(todo):
        progress.note(f"resuming: {len(records) - len(todo)} of {len(records)} records already finished or unusable")
    started, asked = time.monotonic(), 0
    backend = teacher
    try:
        size = gen.shard_size or gen.teacher.concurrency
        saver = _Saver(shards, progress, method_spec.key)

        for start in range(0, len(todo), size):
            progress.check_cancelled()
            if backend is None and impl.uses_teacher:
                backend = make_backend(gen.teacher, spec.base_dir)
            chunk = todo[start : start + size]
            finished: dict[str, Outcome] = {}
            plans = {record_key[r["id"]]: (r["id"], record_plan(impl, judge_prompts, r)) for r in chunk}
            try:
                run_plans(backend, plans, finished, on_step=saver.stepped, on_finished=saver.save)
            finally:
                saver.save([o for k, o in finished.items() if k not in saver.keys])  # the rest, even when the teacher stops
                outcomes.update(finished)
            asked += len(chunk)
            progress.advance(len(chunk) - len(finished))  # records of the shard that never ended
            progress.note(_status(outcomes, len(records), asked, len(todo), time.monotonic() - started))
    finally:
        if backend is not None and teacher is None:
            backend.close()

    failed = [o for o in outcomes.values() if o.status == "failed"]
    if failed and len(failed) > gen.max_failed_fraction * len(records):
        raise RetryableError(
            f"generate {method_spec.key}: {len(failed)} of {len(records)} records failed at the teacher "
            f"(first: {failed[0].id}: {failed[0].error}); finished records are saved under {WORK_PREFIX}/{work_key}/, run again to resume"
        )
    return _write(store, art_id, prepared.id, config, spec, method_spec, impl, records, record_key, outcomes, missing,
                  other_types, teacher_name, prompts.version, progress)


class _Saver:
    """Saves each step's finished records at once (a kill loses only requests in flight) and moves the
    progress bar as records end, not only when a whole shard has."""

    def __init__(self, shards: ShardCache, progress: Progress, label: str) -> None:
        self.shards, self.progress, self.label = shards, progress, label
        self.keys: set[str] = set()

    def save(self, ended: list[Outcome]) -> None:
        if ended:
            self.shards.append(ended)
            self.keys.update(o.key for o in ended)
            self.progress.advance(len(ended))

    def stepped(self, step: int, waiting: int) -> None:
        self.progress.check_cancelled()
        if waiting:
            self.progress.note(f"generate {self.label}: teacher step {step} answered; {waiting} records still in progress")


def _status(outcomes: dict[str, Outcome], total: int, asked: int, todo: int, elapsed: float) -> str:
    ok = sum(1 for o in outcomes.values() if o.status == "done")
    failed = sum(1 for o in outcomes.values() if o.status == "failed")
    rate = asked / elapsed if elapsed > 0 else 0.0
    eta = f"{(todo - asked) / rate:.0f} s" if rate > 0 else "?"
    return f"{ok + failed}/{total} records: ok {ok}, failed {failed}, {rate:.2f} records/s, ETA {eta}"


def _write(store: Store, art_id: str, prepared_id: str, config: dict[str, Any], spec: PipelineSpec, method_spec: MethodSpec,
           impl: Method, records: list[dict[str, Any]], record_key: dict[str, str], outcomes: dict[str, Outcome],
           missing: dict[str, list[str]], other_types: dict[str, int], teacher_name: str, prompt_version: str,
           progress: Progress) -> ArtifactRef:
    gen = spec.generate
    prepared = store.open(prepared_id)
    tests = list(prepared.iter_jsonl("test.jsonl")) if "test.jsonl" in prepared.files else []
    candidates: list[Candidate] = []
    rejects: list[dict[str, Any]] = []
    for r in records:
        if r["id"] in missing:
            rejects.append({"id": r["id"], "reason": "missing_fields", "score": None, "source_ids": [r["id"]],
                            "detail": f"lacks {', '.join(missing[r['id']])}"})
            continue
        outcome = outcomes.get(record_key[r["id"]])
        if outcome is None or outcome.status == "failed":
            rejects.append({"id": r["id"], "reason": "teacher_failed", "score": None, "source_ids": [r["id"]],
                            "detail": outcome.error if outcome else "not generated"})
            continue
        if not outcome.candidates:
            rejects.append({"id": r["id"], "reason": "no_output", "score": None, "source_ids": [r["id"]],
                            "detail": "the method produced nothing for this record"})
        candidates.extend(outcome.candidates)
    result, filter_stats = apply_filters(candidates, gen.filters, gen.filters.judge, tests + decontamination_records(spec),
                                         {r["id"]: r for r in records}, impl.uses_teacher)
    for c, verdict in result.rejected:
        rejects.append({"id": c.id, "reason": verdict.reason, "score": verdict.score, "source_ids": c.source_ids,
                        "detail": verdict.detail, "messages": c.messages})
    provenance = {"method": method_spec.name, "label": method_spec.key, "teacher": teacher_name,
                  "prompt_version": prompt_version, "temperature": gen.teacher.temperature if impl.uses_teacher else None, "seed": gen.seed}
    rows = [_example(c, gen.system_prompt, provenance) for c in result.kept]

    kept_ids = {sid for c in result.kept for sid in c.source_ids}
    done = [o for o in outcomes.values() if o.status == "done"]
    tokens_in = sum(o.prompt_tokens for o in done)
    tokens_out = sum(o.completion_tokens for o in done)
    t = gen.teacher
    cost = None
    if t.price_per_1k_input is not None or t.price_per_1k_output is not None:
        cost = round(tokens_in / 1000 * (t.price_per_1k_input or 0) + tokens_out / 1000 * (t.price_per_1k_output or 0), 6)
    failed = sum(1 for r in rejects if r["reason"] == "teacher_failed")
    stats = {
        "method": method_spec.key, "teacher": teacher_name, "prompt_version": prompt_version,
        "records": len(rows), "rejected": len(rejects), "input_records": len(records),
        "candidates": len(candidates), "generated_records": len(kept_ids), "failed_records": failed,
        "filtered_records": len(records) - len(kept_ids) - failed,
        "resumed_records": sum(1 for o in done if o.cached), "skipped_other_types": other_types,
        "reasons": dict(Counter(r["reason"] for r in rejects)),
        "tokens": {"prompt": tokens_in, "completion": tokens_out, "total": tokens_in + tokens_out},
        "cost": cost, "empty": not rows, "kept_share": round(len(rows) / len(candidates), 4) if candidates else 0.0, **filter_stats,
    }
    if not rows:
        progress.note(f"generate {method_spec.key}: no example survived ({stats['reasons']}); the artifact is empty")
    writer = store.create("synthetic", [prepared_id], config, producer="synthtune.generator", art_id=art_id)
    with writer:
        writer.write_jsonl("data.jsonl", rows)
        writer.write_jsonl("rejects.jsonl", rejects)
        writer.write_json("stats.json", stats)
        writer.stats = stats
        return writer.commit()


def _example(c: Candidate, system_prompt: str, provenance: dict[str, Any]) -> dict[str, Any]:
    messages = c.messages if c.messages[0]["role"] == "system" else [{"role": "system", "content": system_prompt}, *c.messages]
    row: dict[str, Any] = {"id": c.id, "messages": messages}
    if c.tools:
        row["tools"] = c.tools
    row["provenance"] = {"source_ids": c.source_ids, **provenance, "variant": c.variant, "requests": c.sampling,
                         **({"score": c.score} if c.score is not None else {})}
    return row
