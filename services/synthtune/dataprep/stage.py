"""The prepare stage: read -> translate -> clean -> drop incomplete/duplicates/outliers -> split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synthtune.dataprep.clean import (
    Redactor,
    expand_abbreviations,
    load_abbreviations,
    normalize_whitespace,
    sentence_case,
)
from synthtune.dataprep.dedup import exact_key, near_duplicate_groups
from synthtune.dataprep.sources import load_sources, units_of
from synthtune.dataprep.split import SPLITS, split_by_length
from synthtune.dataprep.stats import dataset_stats, plot_lengths
from synthtune.errors import InvalidInput, PermanentError
from synthtune.progress import Progress
from synthtune.records import KNOWN_FIELDS, combined_length, field_text
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import ArtifactRef, Store, sha256_file

PRODUCER = "synthtune.dataprep"


def _record_text(record: dict[str, Any]) -> str:
    if record["type"] != "record":
        return record.get("text", "")
    # Known fields only: extras such as who reported a ticket do not make it a different ticket.
    return " | ".join(field_text(record, k) for k in KNOWN_FIELDS)


def _clean(records: list[dict[str, Any]], spec: PipelineSpec) -> int:
    """Normalise every text in place; return how many personal-data spans were redacted."""
    prep = spec.prepare
    if prep.abbreviations is True:
        abbreviations = load_abbreviations(None)
    elif prep.abbreviations:
        abbreviations = load_abbreviations(str(prep.abbreviations))
    else:
        abbreviations = ()
    redact = Redactor(prep.redact, spec.base_dir)
    redacted = 0

    def tidy(text: str, prose: bool) -> str:
        nonlocal redacted
        text = normalize_whitespace(text) if prose else text.strip()
        if prose and prep.normalize_case:
            text = sentence_case(text)
        if prose and abbreviations:
            text = expand_abbreviations(text, abbreviations)
        text, n = redact(text)  # last, so placeholders keep their case
        redacted += n
        return text

    for r in records:
        if r["type"] == "record":
            r["fields"] = {k: tidy(v, k != "hours") for k, v in r["fields"].items()}
        elif r["type"] == "chunk":
            r["text"] = tidy(r["text"], False)
    return redacted


def _translate(records: list[dict[str, Any]], spec: PipelineSpec, progress: Progress) -> list[dict[str, Any]]:
    """Translate mapped fields with the teacher; records whose translation fails are returned as rejects."""
    from synthtune.llm.chat import ChatRequest, make_backend

    cfg = spec.prepare.translate
    assert cfg is not None
    backend = make_backend(spec.generate.teacher, spec.base_dir)
    jobs = [(r, f) for r in records if r["type"] == "record" for f in cfg.fields if field_text(r, f)]
    progress.start(len(jobs), f"translating to {cfg.target_language}")
    requests = [
        ChatRequest(
            messages=[
                {"role": "system", "content": f"Translate the user's maintenance text into {cfg.target_language}. Reply with the translation only."},
                {"role": "user", "content": field_text(r, f)},
            ],
            temperature=0.0,
        )
        for r, f in jobs
    ]
    results = backend.complete(requests, progress) if requests else []
    failed: dict[str, str] = {}
    for (r, f), res in zip(jobs, results, strict=True):
        if not res.ok or not res.text.strip():
            failed.setdefault(r["id"], f"translation of {f} failed: {res.error or 'empty reply'}")
        else:
            r["fields"][f] = res.text.strip()
    backend.close()
    rejects = [{"id": rid, "reason": reason} for rid, reason in failed.items()]
    records[:] = [r for r in records if r["id"] not in failed]
    return rejects


def _iqr_bounds(lengths: list[int], factor: float) -> tuple[float, float]:
    s = sorted(lengths)
    q1, q3 = s[len(s) // 4], s[(3 * len(s)) // 4]
    return q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)


def artifact_config(spec: PipelineSpec, file_hashes: list[tuple[str, str]]) -> dict[str, Any]:
    return {"source": spec.source.model_dump(), "prepare": spec.prepare.model_dump(), "files": file_hashes}


def run(spec: PipelineSpec, inputs: Mapping[str, Any], store: Store, progress: Progress) -> ArtifactRef:
    """Read, clean, deduplicate, redact and split the source records into a `prepared` artifact."""
    progress.start(None, "reading sources")
    loaded = load_sources(spec)
    hashes = [(p.name, sha256_file(p)) for p in loaded.files]
    art_id = store.artifact_id("prepared", [], artifact_config(spec, hashes))
    cached = store.find(art_id)
    if cached is not None:
        progress.note(f"reusing cached {art_id}")
        return cached
    rejects = list(loaded.rejects)
    records = loaded.records
    counts: dict[str, int] = {"read": len(records) + len(rejects)}

    def drop(keep: list[dict[str, Any]], gone: list[tuple[dict[str, Any], str]], step: str) -> list[dict[str, Any]]:
        for r, reason in gone:
            rejects.append({"id": r["id"], "reason": reason, "step": step})
        counts[step] = len(keep)
        progress.note(f"{step}: kept {len(keep)}, dropped {len(gone)}")
        return keep

    if spec.prepare.translate is not None:
        rejects.extend(_translate(records, spec, progress.child("translate")))
        counts["translate"] = len(records)
    progress.check_cancelled()
    progress.start(len(records), "cleaning")
    redacted = _clean(records, spec)
    progress.advance(len(records))

    required = spec.prepare.required
    incomplete = [(r, "incomplete: missing " + ", ".join(f for f in required if not field_text(r, f)))
                  for r in records if r["type"] == "record" and any(not field_text(r, f) for f in required)]
    gone_ids = {id(r) for r, _ in incomplete}
    records = drop([r for r in records if id(r) not in gone_ids], incomplete, "complete")

    if spec.prepare.dedup.exact:
        seen: dict[str, str] = {}
        keep, dupes = [], []
        for r in records:
            key = exact_key(_record_text(r))
            if key in seen:
                dupes.append((r, f"exact duplicate of {seen[key]}"))
            else:
                seen[key] = r["id"]
                keep.append(r)
        records = drop(keep, dupes, "exact_dedup")

    near = spec.prepare.dedup.near
    if near is not False and len(records) > 1:
        first = near_duplicate_groups([_record_text(r) for r in records], float(near))
        dupes = [(r, f"near duplicate of {records[g]['id']} (similarity >= {near})") for i, (r, g) in enumerate(zip(records, first, strict=True)) if g != i]
        dupe_ids = {id(r) for r, _ in dupes}
        records = drop([r for r in records if id(r) not in dupe_ids], dupes, "near_dedup")

    outl = spec.prepare.outliers
    if outl.method != "none":
        out: list[tuple[dict[str, Any], str]] = []
        for kind in ("record", "chunk", "episode"):  # lengths differ by kind: judge each on its own
            of_kind = [r for r in records if r["type"] == kind]
            if len(of_kind) < 8 and outl.method == "iqr":
                continue
            lengths = [combined_length(r) for r in of_kind]
            if outl.method == "iqr":
                lo, hi = _iqr_bounds(lengths, outl.iqr_factor)
            else:
                lo, hi = float(outl.min_chars or 0), float(outl.max_chars or 10**12)
            out += [(r, f"length outlier: {n} characters outside [{max(lo, 0):.0f}, {hi:.0f}]")
                    for r, n in zip(of_kind, lengths, strict=True) if not lo <= n <= hi]
        out_ids = {id(r) for r, _ in out}
        records = drop([r for r in records if id(r) not in out_ids], out, "outliers")
    if not records:
        raise InvalidInput(f"no records left after cleaning ({len(rejects)} rejected); see the reasons in rejects")

    progress.check_cancelled()
    progress.start(len(records), "near-duplicate grouping and split")
    s = spec.prepare.split
    texts = [_record_text(r) for r in records]
    groups = near_duplicate_groups(texts, float(s.group_threshold)) if s.group_threshold is not False else list(range(len(records)))
    names = split_by_length([combined_length(r) for r in records], groups, [s.train, s.validation, s.test], s.seed, s.length_bins)
    progress.advance(len(records))
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for r, g, name in zip(records, groups, names, strict=True):
        r["group"] = records[g]["id"]  # near-duplicates share their first member's id
        splits[name].append(r)

    kept_units = sum(units_of(r) for r in records)
    if kept_units + len(rejects) != loaded.input_units:
        raise PermanentError(f"internal count mismatch: read {loaded.input_units}, kept {kept_units}, rejected {len(rejects)}")
    stats = dataset_stats(splits)
    stats.update({
        "input": loaded.input_units, "kept": kept_units, "rejected": len(rejects), "records": len(records),
        "steps": counts, "redacted_spans": redacted, "files": [name for name, _ in hashes],
        "rejects_by_step": _by_step(rejects),
    })
    with store.create("prepared", [], artifact_config(spec, hashes), PRODUCER, art_id) as writer:
        for name, rows in splits.items():
            writer.write_jsonl(f"{name}.jsonl", rows)
        writer.write_jsonl("rejects.jsonl", rejects)
        stats["plots"] = plot_lengths(splits, writer.dir)
        writer.write_json("stats.json", stats)
        writer.stats.update({k: stats[k] for k in ("input", "kept", "rejected", "records", "splits")})
        ref = writer.commit()
    progress.note(f"prepared {len(records)} records ({', '.join(f'{k} {len(v)}' for k, v in splits.items())}), {len(rejects)} rejected")
    return ref


def _by_step(rejects: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rejects:
        key = r.get("step", "read")
        out[key] = out.get(key, 0) + 1
    return out
