"""Base models kept in the artifact store: pushed once, streamed into each pod's model cache.

``synthtune models push`` writes ``models/<name>/`` (the files, then ``model.json`` listing
each with its sha256 and size, last, so a half-pushed model is invisible). A pipeline names it
as ``train.base_model: <name>`` (resolved in the run's store) or as the folder's URI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput, NotFound
from synthtune.store import Store, open_store
from synthtune.store.fetch import RemoteObject, download, is_uri
from synthtune.store.keys import check_key

MODELS_PREFIX = "models"
MODEL_MANIFEST = "model.json"
COMPLETE = ".synthtune-complete"  # in a streamed model's folder: "pulling" first, the manifest's stamp once every file is there


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def hf_cache_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub model id (``org/name``), or None when it was never downloaded."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        return None
    repo = hf_hub_cache() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        return snap if (snap / "config.json").is_file() else None
    snaps = sorted(p for p in (repo / "snapshots").glob("*") if (p / "config.json").is_file()) if repo.is_dir() else []
    return snaps[-1] if snaps else None


def model_key(name: str) -> str:
    """The store folder of a model name; InvalidInput when the name cannot be a store key."""
    try:
        return check_key(f"{MODELS_PREFIX}/{name.strip('/')}")
    except InvalidInput as exc:
        raise InvalidInput(f"model name {name!r}: {exc}") from None


def push_model(source: str, store: Store, name: str | None = None) -> tuple[str, dict[str, Any]]:
    """Upload a model folder (or a hub id's local snapshot) to ``models/<name>/``; return (URI, manifest)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        snapshot = hf_cache_snapshot(source)
        if snapshot is None:
            raise InvalidInput(f"{source!r} is neither a model folder nor a model id in the local Hugging Face cache "
                               f"({hf_hub_cache()}); download it there first or give its folder")
        folder, name = snapshot, name or source
    if not (folder / "config.json").is_file():
        raise InvalidInput(f"{folder}: no config.json (expected a transformers model folder)")
    key = model_key(name or folder.resolve().name)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # .git, .cache and lock files are not part of the model
        files[rel] = {"sha256": store.backend.put_file(f"{key}/{rel}", path), "bytes": path.stat().st_size}
    manifest = {"name": key.removeprefix(MODELS_PREFIX + "/"), "source": source, "files": files,
                "bytes": sum(f["bytes"] for f in files.values()), "pushed_at": datetime.now(UTC).isoformat()}
    store.put_json(f"{key}/{MODEL_MANIFEST}", manifest)
    return store.backend.uri(key), manifest


def store_model_uri(name: str, store: Store | None) -> str | None:
    """The URI of ``models/<name>`` in ``store`` when a complete model is there, else None."""
    if store is None or is_uri(name) or name.startswith((".", "/", "~")):
        return None
    try:
        key = model_key(name)
    except InvalidInput:
        return None
    return store.backend.uri(key) if store.exists(f"{key}/{MODEL_MANIFEST}") else None


def read_manifest(uri: str) -> tuple[Store, dict[str, Any]]:
    folder = open_store(uri)
    try:
        return folder, dict(folder.get_json(MODEL_MANIFEST))
    except NotFound:
        raise InvalidInput(f"base model {uri!r}: no {MODEL_MANIFEST} there; push the model with "
                           "`synthtune models push DIR --store STORE`") from None


def fetch_model(uri: str, cache: Path) -> Path:
    """Stream a stored model into ``cache`` (once per manifest), checking every file's sha256."""
    folder, manifest = read_manifest(uri)
    target = cache / "store" / f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-{Path(manifest['name']).name}"
    return _stream(uri, folder, manifest, target)


def pull_model(model: str, store: Store, dest: Path, on_file: Callable[[str, int], None] | None = None) -> tuple[str, dict[str, Any]]:
    """Stream ``model`` (a name pushed to ``store``, or its URI) into the folder ``dest``; return (URI, manifest).

    ``dest`` holds exactly the model's files afterwards (plus a completion stamp, so a second pull of the
    same manifest downloads nothing); a folder holding anything else is refused rather than emptied.
    """
    uri = model if is_uri(model) else store_model_uri(model, store)
    if uri is None:
        raise InvalidInput(f"model {model!r} is not in the store {store.uri}; push it with `synthtune models push DIR --store {store.uri}`")
    folder, manifest = read_manifest(uri)
    if dest.is_dir() and any(dest.iterdir()) and not (dest / COMPLETE).is_file():
        raise InvalidInput(f"{dest}: the folder holds other files; pull into an empty or new folder")
    return uri, {**manifest, "path": str(_stream(uri, folder, manifest, dest, on_file))}


def _stream(uri: str, folder: Store, manifest: dict[str, Any], target: Path, on_file: Callable[[str, int], None] | None = None) -> Path:
    """Every file of ``manifest`` into ``target``, each sha256-checked; skipped when ``target`` already holds this manifest."""
    stamp = hashlib.sha256(repr(sorted((k, v["sha256"]) for k, v in manifest["files"].items())).encode()).hexdigest()
    done = target / COMPLETE
    if done.is_file() and done.read_text() == stamp:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    done.write_text("pulling")  # the folder is ours from here: a pull cut short is redone, not refused as foreign
    for rel, info in manifest["files"].items():
        digest = download(RemoteObject(f"{uri}/{rel}", rel, folder.backend), target / rel)
        if digest != info["sha256"]:
            shutil.rmtree(target, ignore_errors=True)
            raise InvalidInput(f"model {uri!r}: {rel} has sha256 {digest}, its {MODEL_MANIFEST} says {info['sha256']}")
        if on_file is not None:
            on_file(rel, int(info["bytes"]))
    done.write_text(stamp)
    return target


def hub_allowed() -> bool:
    """Whether this process may download from the Hugging Face Hub (the chart's models.hubOffline)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("1", "true", "yes", "on")
