"""``run``: the prepare stage, from source files to a cached ``prepared`` artifact."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthtune.dataprep.abbreviations import abbreviation_file
from synthtune.dataprep.pipeline import Prepared, prepare_records
from synthtune.dataprep.plots import write_length_plots
from synthtune.dataprep.readers import read_sources, resolve_files
from synthtune.dataprep.rejects import Rejects
from synthtune.dataprep.stats import dataset_stats
from synthtune.errors import InvalidInput, PermanentError
from synthtune.progress import Progress
from synthtune.records import combined_length
from synthtune.spec import PipelineSpec
from synthtune.store import ArtifactRef, Store, sha256_file

KIND = "prepared"
PRODUCER = "synthtune.dataprep"
# Part of the cache key: raise it when the same inputs and spec would give other output, so an
# artifact cached by older code is not reused. 2: split groups are connected components, rows of
# unmapped sheets are rejects, field_completeness is {input, kept}. 3: large LSH buckets are paired
# along a window; tables without event columns beside an event log are records.
FORMAT = 3


def _file_hash(path: Path, what: str) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InvalidInput(f"{what}: cannot read {path} ({exc.strerror})") from None


def cache_config(spec: PipelineSpec) -> dict[str, Any]:
    """Everything the output depends on: the source and prepare spec and the input files' contents."""
    files = resolve_files(spec.source, spec.base_dir)
    config: dict[str, Any] = {
        "format": FORMAT,
        "source": spec.source.model_dump(mode="json"),
        "inputs": {f.label: _file_hash(f.path, "source.paths") for f in files},
        "prepare": spec.prepare.model_dump(mode="json"),
    }
    if spec.prepare.translate is not None:
        config["teacher"] = spec.generate.teacher.model_dump(mode="json")
    custom = abbreviation_file(spec.prepare.abbreviations, spec.base_dir)
    if custom is not None:
        config["abbreviations_sha256"] = _file_hash(custom, "prepare.abbreviations")
    if spec.prepare.redact.names_file:
        names = Path(spec.prepare.redact.names_file).expanduser()
        names = names if names.is_absolute() else Path(spec.base_dir or ".") / names
        config["names_file_sha256"] = _file_hash(names, "prepare.redact.names_file")
    return config


def _check_required_mapped(spec: PipelineSpec) -> None:
    """A required field that no column feeds would reject every record: say so up front."""
    if not spec.source.fields:
        return
    unmapped = [f for f in spec.prepare.required if f not in spec.source.fields]
    if unmapped:
        raise InvalidInput(
            f"prepare.required names {', '.join(map(repr, unmapped))}, but source.fields does not map "
            f"{'it' if len(unmapped) == 1 else 'them'} (mapped: {', '.join(spec.source.fields)}); "
            "map a column to each, or change prepare.required"
        )


def prepare(spec: PipelineSpec, progress: Progress) -> tuple[Prepared, list[dict[str, Any]], int]:
    """Read and prepare in memory: (prepared, per-file info, input count)."""
    _check_required_mapped(spec)
    rejects = Rejects()
    read = read_sources(spec.source, spec.prepare, spec.base_dir, rejects, progress)
    if not read.records:
        unreadable = f"; all {len(rejects)} rows or pages were unreadable, the first reasons follow" if len(rejects) else " (no data rows)"
        raise InvalidInput(f"no records could be read from {', '.join(f['file'] for f in read.files)}{unreadable}",
                           [r["reason"] for r in rejects.rows[:10]])
    n_input = len(read.records) + len(rejects)
    translator = None
    if spec.prepare.translate is not None:
        from synthtune.llm.chat import make_backend

        translator = make_backend(spec.generate.teacher, spec.base_dir)
    try:
        prepared = prepare_records(read.records, spec.prepare, rejects, progress, spec.base_dir, translator)
    finally:
        if translator is not None:
            translator.close()
    prepared.steps.insert(0, {"step": "read", "in": n_input, "kept": len(read.records), "rejected": n_input - len(read.records)})
    kept = sum(len(v) for v in prepared.splits.values())
    if n_input != kept + len(rejects):
        raise PermanentError(f"bug: {n_input} input records but {kept} kept + {len(rejects)} rejected")
    return prepared, read.files, n_input


def run(spec: PipelineSpec, inputs: Mapping[str, ArtifactRef] | None = None, store: Store | None = None,
        progress: Progress | None = None) -> ArtifactRef:
    """Prepare the pipeline's source records into a ``prepared`` artifact, or return the cached one."""
    if store is None:
        raise PermanentError("dataprep.run needs a store")
    progress = progress or Progress("prepare")
    config = cache_config(spec)
    art_id = store.artifact_id(KIND, [], config)
    cached = store.find(art_id)
    if cached is not None:
        progress.note(f"using cached {art_id}")
        return cached
    prepared, files, n_input = prepare(spec, progress)
    progress.start(None, "writing the prepared dataset")
    kept = {name: len(rows) for name, rows in prepared.splits.items()}
    stats = {
        "counts": {"input": n_input, **{f"after_{s['step']}": s["kept"] for s in prepared.steps},
                   "kept": sum(kept.values()), "rejected": len(prepared.rejects)},
        "steps": prepared.steps,
        "rejected_by_step": prepared.rejects.by_step(),
        "rejected_by_code": prepared.rejects.by_code(),
        "files": files,
        **dataset_stats(prepared.splits, prepared.input_completeness),
        **prepared.extra_stats,
    }
    with store.create(KIND, [], config, PRODUCER, art_id=art_id) as writer:
        for name, rows in prepared.splits.items():
            writer.write_jsonl(f"{name}.jsonl", rows)
        writer.write_jsonl("rejects.jsonl", prepared.rejects.rows)
        lengths = {name: [combined_length(r) for r in rows] for name, rows in prepared.splits.items()}
        stats["plots"] = write_length_plots(lengths, writer.dir)
        writer.write_json("stats.json", stats)
        writer.stats = {"input": n_input, **kept, "rejected": len(prepared.rejects)}
        ref = writer.commit()
    progress.note(f"prepared {kept['train']}/{kept['validation']}/{kept['test']} records, {len(prepared.rejects)} rejected")
    return ref
