"""What a client of a server may choose: the server's own base folder, store and remote-code rule win.

The bearer token lets a caller run stages; without this policy it could also point a server at any
folder on its disk (``base_dir``, absolute source paths), any store (``store_uri``) and run model
code from the model's folder (``trust_remote_code``). Set on the server:

- ``SYNTHTUNE_SERVE_BASE_DIR``: the only folder specs may read from (source paths, evaluation sets,
  abbreviations, name lists); a request's or spec's ``base_dir`` must lie inside it.
- ``SYNTHTUNE_SERVE_STORE``: the only store a request may name (an empty ``store_uri`` means it);
  ``s3://`` source paths and evaluation sets must lie inside it.
- ``SYNTHTUNE_ALLOW_REMOTE_CODE=1``: allow ``train.trust_remote_code: true`` (refused otherwise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from synthtune.errors import InvalidInput
from synthtune.spec import PipelineSpec
from synthtune.store.fetch import is_uri

BASE_DIR_ENV = "SYNTHTUNE_SERVE_BASE_DIR"
STORE_ENV = "SYNTHTUNE_SERVE_STORE"
REMOTE_CODE_ENV = "SYNTHTUNE_ALLOW_REMOTE_CODE"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _read_paths(spec: PipelineSpec) -> list[tuple[str, str]]:
    """(what, entry) for every file a stage reads because the spec names it: records and evaluation sets."""
    return [("source.paths", p) for p in spec.source.paths] + [(f"evaluate.sets[{s.name}].path", s.path) for s in spec.evaluate.sets]


@dataclass(frozen=True)
class ServerPolicy:
    """The server side's limits on a request; None/False fields leave the client's choice."""

    base_dir: Path | None = None
    store: str | None = None
    allow_remote_code: bool = False

    @classmethod
    def from_env(cls) -> ServerPolicy:
        base = os.environ.get(BASE_DIR_ENV, "").strip()
        return cls(
            base_dir=Path(base).expanduser().resolve() if base else None,
            store=os.environ.get(STORE_ENV, "").strip() or None,
            allow_remote_code=os.environ.get(REMOTE_CODE_ENV, "").strip().lower() in ("1", "true", "yes"),
        )

    def store_uri(self, requested: str) -> str | None:
        """The store to open for a request's ``store_uri`` (empty: the server's default)."""
        if self.store is None:
            return requested or None
        if requested and requested.rstrip("/") != self.store.rstrip("/"):
            raise InvalidInput(f"store_uri {requested!r}: this server only uses its own store ({STORE_ENV}={self.store})")
        return self.store

    def check_spec(self, spec: PipelineSpec, where: str) -> PipelineSpec:
        """The spec with its base_dir pinned inside the server's base folder; InvalidInput naming what is refused."""
        if spec.train.trust_remote_code and not self.allow_remote_code:
            raise InvalidInput(f"{where}: train.trust_remote_code is refused by this server (set {REMOTE_CODE_ENV}=1 on the server to allow it)")
        self._check_objects(spec, where)
        if self.base_dir is None:
            return spec
        base = Path(spec.base_dir).expanduser() if spec.base_dir else self.base_dir
        base = (base if base.is_absolute() else self.base_dir / base).resolve()
        if not _inside(base, self.base_dir):
            raise InvalidInput(f"{where}: base_dir {spec.base_dir!r} is outside this server's folder {self.base_dir} ({BASE_DIR_ENV})")
        for what, entry in _read_paths(spec):
            if is_uri(entry):
                continue  # an object in S3: _check_objects holds it to the server's store
            pattern = Path(entry).expanduser()
            resolved = (pattern if pattern.is_absolute() else base / pattern).resolve()
            if not _inside(resolved, self.base_dir):
                raise InvalidInput(f"{where}: {what} {entry!r} is outside this server's folder {self.base_dir} ({BASE_DIR_ENV})")
        return spec.model_copy(update={"base_dir": str(base)})

    def _check_objects(self, spec: PipelineSpec, where: str) -> None:
        """With a server store, ``s3://`` sources and sets must lie inside it (the server's credentials read them)."""
        if self.store is None:
            return
        root = self.store.rstrip("/") + "/"
        for what, entry in _read_paths(spec):
            if is_uri(entry) and (not entry.startswith(root) or ".." in entry.split("/")):
                raise InvalidInput(f"{where}: {what} {entry!r} is outside this server's store {self.store} ({STORE_ENV}); "
                                   f"upload it there with `synthtune upload FILE --store {self.store}`")
