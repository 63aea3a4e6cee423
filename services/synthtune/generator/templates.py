"""Versioned prompt templates shipped as package data: ``prompts/<method>/<version>.yaml`` (Jinja2 text)."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from ruamel.yaml import YAML

from synthtune.errors import InvalidInput

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)) or (0,)


def versions(method: str) -> list[str]:
    """Shipped versions of a method's prompts, oldest first."""
    folder = resources.files("synthtune.generator").joinpath("prompts", method)
    found = [p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")] if folder.is_dir() else []
    return sorted(found, key=_version_key)


class PromptSet:
    """One version of one method's prompts: templates to render and plain values (lists, schemas)."""

    def __init__(self, method: str, version: str, data: dict[str, Any]) -> None:
        self.method, self.version, self.data = method, version, data
        self._templates = {k: _ENV.from_string(v) for k, v in data.items() if isinstance(v, str)}

    def render(self, name: str, **values: Any) -> str:
        if name not in self._templates:
            raise KeyError(f"prompts {self.method}/{self.version} have no template {name!r}")
        text = self._templates[name].render(**values)
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)


@lru_cache(maxsize=64)
def load_prompts(method: str, version: str | None = None) -> PromptSet:
    """The named version (the newest shipped when None); an unknown version is bad input."""
    shipped = versions(method)
    if not shipped:
        raise InvalidInput(f"method {method!r} ships no prompt templates")
    chosen = version or shipped[-1]
    if chosen not in shipped:
        raise InvalidInput(f"method {method}: no prompt version {chosen!r} (shipped: {', '.join(shipped)})")
    text = resources.files("synthtune.generator").joinpath("prompts", method, f"{chosen}.yaml").read_text(encoding="utf-8")
    data = YAML(typ="safe").load(text) or {}
    return PromptSet(method, chosen, dict(data))
