"""The preparation steps in order, on records already read; every step's drops are counted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from synthtune.dataprep.abbreviations import load_abbreviations
from synthtune.dataprep.cleaning import Cleaner, whitespace_record
from synthtune.dataprep.dedup import content_text, drop_exact_duplicates, drop_near_duplicates
from synthtune.dataprep.filters import drop_incomplete, drop_length_outliers
from synthtune.dataprep.redact import Redactor, load_names
from synthtune.dataprep.rejects import Rejects
from synthtune.dataprep.split import SPLITS, assign_splits
from synthtune.dataprep.stats import field_completeness
from synthtune.dataprep.translate import translate_records
from synthtune.errors import PermanentError
from synthtune.llm.chat import ChatBackend
from synthtune.neardup import NearDuplicates, char_shingles
from synthtune.progress import Progress
from synthtune.records import combined_length
from synthtune.spec.prepare import PrepareSpec

_TICK = 2000  # records between progress updates in the cheap per-record steps


@dataclass
class StepLog:
    """Counts in and out of every step; checks that nothing is lost between them."""

    rejects: Rejects
    steps: list[dict[str, Any]] = field(default_factory=list)

    def log(self, step: str, before: int, after: int, rejected_before: int, **extra: Any) -> None:
        rejected = len(self.rejects) - rejected_before
        if before != after + rejected:
            raise PermanentError(f"bug in step {step!r}: {before} records in, {after} kept + {rejected} rejected")
        self.steps.append({"step": step, "in": before, "kept": after, "rejected": rejected, **extra})


@dataclass
class Prepared:
    splits: dict[str, list[dict[str, Any]]]
    rejects: Rejects
    steps: list[dict[str, Any]]
    extra_stats: dict[str, Any]
    input_completeness: dict[str, float] = field(default_factory=dict)  # of the records as read, before any step


def _each(records: list[dict[str, Any]], action: Any, progress: Progress, description: str) -> None:
    progress.start(len(records), description)
    for i, record in enumerate(records, 1):
        action(record)
        if i % _TICK == 0:
            progress.check_cancelled()
            progress.advance(_TICK)
    progress.advance(len(records) % _TICK)


def prepare_records(
    records: list[dict[str, Any]],
    spec: PrepareSpec,
    rejects: Rejects,
    progress: Progress,
    base_dir: str | None = None,
    translator: ChatBackend | None = None,
) -> Prepared:
    """Clean, filter, deduplicate and split ``records`` (changed in place); drops go to ``rejects``."""
    log = StepLog(rejects)
    extra: dict[str, Any] = {}
    n = len(records)
    input_completeness = field_completeness(records)
    _each(records, whitespace_record, progress, "normalising whitespace")
    redactor = Redactor(spec.redact, load_names(spec.redact, base_dir))
    _each(records, redactor.redact_record, progress, "redacting personal data")
    extra["redactions"] = dict(redactor.counts)

    if spec.translate is not None:
        if translator is None:
            raise PermanentError("prepare.translate is set but no teacher backend was given")
        before, r0 = len(records), len(rejects)
        records, extra["translation"] = translate_records(records, spec.translate, translator, rejects, progress)
        log.log("translate", before, len(records), r0)

    cleaner = Cleaner(load_abbreviations(spec.abbreviations, base_dir), spec.normalize_case, spec.text_fields)
    changed = [0]

    def clean(record: dict[str, Any]) -> None:
        changed[0] += cleaner.clean_record(record)

    _each(records, clean, progress, "expanding abbreviations and normalising case")
    extra["cleaned_records"] = changed[0]

    progress.start(len(records), "dropping incomplete records")
    before, r0 = len(records), len(rejects)
    records = drop_incomplete(records, spec.required, rejects)
    log.log("incomplete", before, len(records), r0, required=spec.required)

    if spec.dedup.exact:
        progress.start(len(records), "dropping exact duplicates")
        before, r0 = len(records), len(rejects)
        records = drop_exact_duplicates(records, rejects)
        log.log("exact_dedup", before, len(records), r0)

    signatures = None
    if spec.dedup.near is not False:
        before, r0 = len(records), len(rejects)
        records, signatures = drop_near_duplicates(
            records, float(spec.dedup.near), spec.dedup.num_perm, spec.dedup.shingle_chars, rejects, progress
        )
        log.log("near_dedup", before, len(records), r0, threshold=spec.dedup.near)

    if spec.outliers.method != "none":
        progress.start(len(records), "dropping length outliers")
        before, r0 = len(records), len(rejects)
        records, fences = drop_length_outliers(records, spec.outliers, rejects)
        log.log("outliers", before, len(records), r0, method=spec.outliers.method, fences=fences)

    splits, groups = split_records(records, spec, progress, signatures)
    extra["split_groups"] = groups
    kept = sum(len(v) for v in splits.values())
    log.log("split", len(records), kept, len(rejects))
    if log.steps and log.steps[0]["in"] != n:
        raise PermanentError("bug: step counts do not start from the input")
    return Prepared(splits, rejects, log.steps, extra, input_completeness)


def split_records(
    records: list[dict[str, Any]], spec: PrepareSpec, progress: Progress, signatures: Any = None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Records per split, in input order; near-duplicate groups (connected components) stay within one split."""
    ids = [r["id"] for r in records]
    split = spec.split
    info: dict[str, Any] = {}
    if split.group_near is not False and records:
        threshold = float(split.group_near)
        near = NearDuplicates([content_text(r) for r in records], threshold, spec.dedup.num_perm,
                              char_shingles(spec.dedup.shingle_chars), progress,
                              f"near-duplicate groups (Jaccard >= {threshold:g})", ids, signatures)
        groups = near.groups()
        info = near.info
    else:
        groups = list(range(len(records)))
    progress.start(len(records), "splitting")
    assignment = assign_splits(ids, [combined_length(r) for r in records], groups,
                               [split.train, split.validation, split.test], split.seed, split.length_bins)
    progress.advance(len(records))
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for record, s in zip(records, assignment, strict=True):
        out[SPLITS[s]].append(record)
    sizes = Counter(groups)
    multi = [s for s in sizes.values() if s > 1]
    return out, {"threshold": split.group_near, "groups": len(multi), "records_in_groups": sum(multi),
                 "largest": max(multi, default=1), **info}
