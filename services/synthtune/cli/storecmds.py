"""Client commands that move files between this machine and the store: upload, models push|pull, report --out.

They import only the store and the spec (no torch, no stage extras), so a bare `pip install synthtune`
runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthtune.cli.progress import stderr
from synthtune.errors import InvalidInput, NotFound

models_app = typer.Typer(no_args_is_help=True, help="Base models kept in the store, for the GPU Jobs to stream.")
StoreOpt = Annotated[str | None, typer.Option("--store", help="Artifact store: a path, file:///abs/path or s3://bucket/prefix (default ./synthtune-store).")]


def _store(uri: str | None) -> Any:
    from synthtune.store import open_store

    return open_store(uri)


def _source_path(store: Any, key: str) -> str:
    """What a pipeline's source.paths takes for this object: its s3:// URI, or the local file of a folder store."""
    uri = str(store.backend.uri(key))
    return uri.removeprefix("file://") if uri.startswith("file://") else uri


def _files(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, name under the prefix) for files, and for every file inside a folder (keeping its sub-folders)."""
    out: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            out += [(p, f"{path.name}/{p.relative_to(path).as_posix()}") for p in sorted(path.rglob("*"))
                    if p.is_file() and not p.name.startswith(".")]
        elif path.is_file():
            out.append((path, path.name))
        else:
            raise InvalidInput(f"{path}: no such file or folder")
    return out


def upload(
    files: Annotated[list[Path], typer.Argument(help="Records files or folders to upload.")],
    store: StoreOpt = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Folder in the store to upload under.")] = "sources",
) -> None:
    """Put local records in the store and print the source.paths entries that name them."""
    st = _store(store)
    uris = []
    for path, name in _files(files):
        key = f"{prefix.strip('/')}/{name}"
        digest = st.backend.put_file(key, path)
        stderr.print(f"uploaded {path} ({path.stat().st_size} bytes, sha256 {digest[:12]})")
        uris.append(_source_path(st, key))
    stderr.print("use them in the pipeline:\nsource:\n  paths:\n" + "".join(f"    - {u}\n" for u in uris), end="")
    for uri in uris:
        typer.echo(uri)


@models_app.command("push")
def models_push(
    source: Annotated[str, typer.Argument(help="A model folder (config.json, safetensors, tokenizer) or a model id in the local Hugging Face cache.")],
    store: StoreOpt = None,
    name: Annotated[str | None, typer.Option(help="Name pipelines use as train.base_model (default: the id, or the folder's name).")] = None,
) -> None:
    """Upload a base model to the store's models/ folder; GPU Jobs stream it into their model cache."""
    from synthtune.llm.model_store import push_model

    st = _store(store)
    uri, manifest = push_model(source, st, name)
    stderr.print(f"pushed {len(manifest['files'])} files ({manifest['bytes'] / 1e6:.1f} MB) to {uri}")
    stderr.print(f"use it in a pipeline run on this store as train.base_model: {manifest['name']}  (or: {uri})")
    typer.echo(uri)


@models_app.command("pull")
def models_pull(
    model: Annotated[str, typer.Argument(help="A model pushed with `synthtune models push`: its name in the store, or its s3:// URI.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to fill with the model's files (new or empty, or an earlier pull of it).")],
    store: StoreOpt = None,
) -> None:
    """Stream a stored model into a folder, checking every file's sha256 (the in-cluster teacher's initContainer runs this)."""
    from synthtune.llm.model_store import pull_model

    st = _store(store)
    uri, manifest = pull_model(model, st, out, lambda rel, size: stderr.print(f"pulled {rel} ({size} bytes)"))
    stderr.print(f"{manifest['name']}: {len(manifest['files'])} files ({manifest['bytes'] / 1e6:.1f} MB) from {uri} in {out}")
    typer.echo(manifest["path"])


@models_app.command("list")
def models_list(store: StoreOpt = None) -> None:
    """List the models in the store: name, size, where they came from."""
    st = _store(store)
    for key in st.list_keys("models/"):
        if key.endswith("/model.json"):
            m = st.get_json(key)
            typer.echo(f"{m['name']}\t{m['bytes'] / 1e6:.1f} MB\t{m['source']}")


def download_report(store_uri: str | None, run_id: str, out: Path) -> Path:
    """Copy runs/<run_id>/report.html and report.json from the store into ``out``; return the HTML's path."""
    st = _store(store_uri)
    base = f"runs/{run_id}"
    if not st.exists(f"{base}/run.json"):
        raise NotFound(f"no run {run_id!r} in {st.uri}")
    if not st.exists(f"{base}/report.html"):
        raise NotFound(f"run {run_id} has no report yet in {st.uri} (it is written when the evaluate stage finishes)")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("report.html", "report.json"):
        if st.exists(f"{base}/{name}"):
            with st.backend.open_read(f"{base}/{name}") as src:
                (out / name).write_bytes(src.read())
    return out / "report.html"
