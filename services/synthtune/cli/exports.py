"""Commands that take a run's products out of the store: its synthetic data (`export`) and its tuned model (`export-model`).

The --format choices repeat the exporters' FORMATS (generator/export.py, trainer/export_model.py) so that
typer refuses another before the store is opened, and lists them in --help.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from synthtune.cli.progress import stderr
from synthtune.cli.storecmds import StoreOpt, _store
from synthtune.errors import InvalidInput
from synthtune.spec.graph import kind_of, method_of

if TYPE_CHECKING:
    from synthtune.controller import RunRecord
    from synthtune.store import Store


MethodOpt = Annotated[str | None, typer.Option(help="Method key whose product to export (default: the only one the run has).")]


def _run_product(store: str | None, run_id: str, kind: str, method: str | None, what: str) -> tuple[Store, RunRecord, str, str]:
    """The store, the run's record, and the method key and artifact id of what its ``kind`` stage made for
    ``method`` (the only one when None)."""
    from synthtune.controller import RunBook

    st = _store(store)
    record = RunBook(st).load(run_id)
    made = {method_of(name): info.artifact["id"] for name, info in record.stages.items() if kind_of(name) == kind and info.artifact}
    if not made:
        raise InvalidInput(f"run {record.run_id} has no {what} yet (run its {kind} stage first)")
    if method is None and len(made) > 1:
        raise InvalidInput(f"run {record.run_id} has several methods; choose one with --method ({', '.join(sorted(made))})")
    key = method or next(iter(made))
    if key not in made:
        raise InvalidInput(f"run {record.run_id} has no {what} for method {key!r} (has: {', '.join(sorted(made))})")
    return st, record, key, made[key]


def _exported(run_id: str, out: Path, summary: str) -> None:
    """What was written on stderr; on stdout the line scripts read."""
    stderr.print(summary)
    typer.echo(f"run_id={run_id} uri={out.resolve()}")


def export(
    run_id: Annotated[str, typer.Argument(help="The run whose synthetic data to export.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (OpenAI: JSONL; Alpaca: a JSON array).")],
    fmt: Annotated[Literal["openai", "alpaca"], typer.Option("--format", help="openai (chat fine-tuning JSONL) or alpaca.")] = "openai",
    method: MethodOpt = None,
    store: StoreOpt = None,
) -> None:
    """Export a run's synthetic data as OpenAI fine-tuning JSONL or Alpaca JSON."""
    from synthtune.generator.export import export_artifact

    st, _, key, artifact_id = _run_product(store, run_id, "generate", method, "synthetic data")
    count = export_artifact(st, artifact_id, fmt, out)
    _exported(run_id, out, f"exported {count} examples of {key} as {fmt}")


def export_model(
    run_id: Annotated[str, typer.Argument(help="The run whose tuned model to export.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model and its card (README.md) into.")],
    fmt: Annotated[Literal["peft", "merged", "gguf"], typer.Option("--format", help="peft (the adapter as is), merged (full safetensors) or gguf (f16 and q8_0, for llama.cpp/Ollama).")] = "gguf",
    method: MethodOpt = None,
    store: StoreOpt = None,
) -> None:
    """Export a run's tuned model as a PEFT adapter, merged safetensors or GGUF, with a model card of its evaluation."""
    from synthtune.evaluator.report import report_paths
    from synthtune.llm.models import resolve_model
    from synthtune.spec import load_spec_text
    from synthtune.trainer.export_model import export_model as export

    st, record, key, artifact_id = _run_product(store, run_id, "train", method, "tuned model")
    spec = load_spec_text(record.spec_yaml, f"run {run_id} spec", base_dir=record.base_dir)
    json_key = report_paths(run_id)[0]
    report = st.get_json(json_key) if st.exists(json_key) else None
    files = export(st.open(artifact_id), resolve_model(spec.train.base_model, spec.base_dir), fmt, out, run_id=run_id, method=key,
                   base_model=spec.train.base_model, report=report, system=spec.generate.system_prompt)
    _exported(run_id, out, f"exported {key} as {fmt}: " + ", ".join(f.name for f in files))
