"""The `prepare` section: cleaning, dedup, redaction, translation and the split."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from synthtune.spec.base import SpecModel, field


def _threshold_or_false(value: float | Literal[False], name: str) -> None:
    if value is not False and not (0.0 < float(value) <= 1.0):
        raise ValueError(f"{name} must be a threshold in (0, 1] or false")


class SplitSpec(SpecModel):
    train: float = field(0.8, help="Share of records for training.", ge=0, le=1)
    validation: float = field(0.1, help="Share of records for validation.", ge=0, le=1)
    test: float = field(0.1, help="Share of records held out for evaluation.", ge=0, le=1)
    seed: int = field(42, help="Seed that makes the split deterministic.")
    length_bins: int = field(10, help="Quantile bins of combined prompt+answer length used to stratify.", ge=1)
    group_near: float | Literal[False] = field(
        0.8,
        help="Jaccard threshold (MinHash LSH) at which similar records are grouped so a group never straddles "
        "two splits, or false to split record by record.",
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1 (got {total:g})")
        return self

    @model_validator(mode="after")
    def _group_threshold(self) -> SplitSpec:
        _threshold_or_false(self.group_near, "split.group_near")
        return self


class DedupSpec(SpecModel):
    exact: bool = field(True, help="Drop records whose normalised text is identical to an earlier one.")
    near: float | Literal[False] = field(
        False, help="Near-duplicate Jaccard threshold for MinHash LSH (e.g. 0.9), or false to skip."
    )
    num_perm: int = field(128, help="MinHash permutations; more is more accurate and slower.", ge=16, le=1024)
    shingle_chars: int = field(5, help="Character n-gram length of the shingles compared for near-duplicates.", ge=2, le=20)

    @model_validator(mode="after")
    def _threshold(self) -> DedupSpec:
        _threshold_or_false(self.near, "dedup.near")
        return self


class OutlierSpec(SpecModel):
    method: Literal["iqr", "bounds", "none"] = field("iqr", help="Length outlier rule: IQR fences, explicit bounds, or none.")
    iqr_factor: float = field(3.0, help="Fence distance in IQRs for the IQR rule.", gt=0)
    min_chars: int | None = field(None, help="Shortest combined length kept (bounds rule).", ge=0)
    max_chars: int | None = field(None, help="Longest combined length kept (bounds rule).", ge=1)


class RedactSpec(SpecModel):
    emails: bool = field(True, help="Replace e-mail addresses with [EMAIL].")
    phones: bool = field(True, help="Replace phone numbers with [PHONE].")
    patterns: dict[str, str] = field(
        default_factory=dict, help="Extra label -> regular expression (e.g. employee numbers), replaced with [LABEL]."
    )
    names: list[str] = field(default_factory=list, help="Person names to replace with [NAME].")
    names_file: str | None = field(None, help="File with one person name per line to replace with [NAME].")


class TranslateSpec(SpecModel):
    target_language: str = field(help="Language to translate records into, e.g. 'English'.")
    fields: list[str] = field(default_factory=lambda: ["problem", "cause", "solution"], help="Fields to translate.")
    source_language: str | None = field(None, help="Language the records are written in, if known; the teacher detects it otherwise.")
    batch_size: int = field(64, help="Texts sent to the teacher per batch (progress and cancellation are checked between batches).", ge=1)


class PrepareSpec(SpecModel):
    required: list[str] = field(
        default_factory=lambda: ["problem", "solution"],
        help="Fields a record must have (non-empty) to be kept; incomplete records are rejected.",
    )
    normalize_case: bool = field(True, help="Turn ALL-CAPS shorthand into sentence case.")
    text_fields: list[str] = field(
        default_factory=lambda: ["problem", "cause", "solution"],
        help="Fields that case normalisation and abbreviation expansion rewrite; other fields are only trimmed.",
    )
    abbreviations: bool | str = field(
        True, help="Expand maintenance abbreviations (L/H, CYL, U/S, ...): true for the shipped list, a file path, or false."
    )
    dedup: DedupSpec = field(default_factory=DedupSpec, help="Exact and near-duplicate removal.")
    outliers: OutlierSpec = field(default_factory=OutlierSpec, help="Length outlier removal.")
    redact: RedactSpec = field(default_factory=RedactSpec, help="Personal data redaction.")
    translate: TranslateSpec | None = field(None, help="Translate records with the teacher before cleaning (optional).")
    chunk_chars: int = field(1500, help="Document chunk size in characters for document-grounded generation.", ge=100)
    chunk_overlap: int = field(200, help="Characters shared by consecutive document chunks.", ge=0)
    split: SplitSpec = field(default_factory=SplitSpec, help="Train/validation/test split stratified by length.")

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> PrepareSpec:
        if self.chunk_overlap >= self.chunk_chars:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_chars ({self.chunk_chars})")
        return self
