"""Abbreviation expansion for maintenance shorthand (``L/H BUCKET CYL`` -> ``left hand BUCKET cylinder``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from synthtune.errors import InvalidInput

SHIPPED = "abbreviations.yaml"


@dataclass
class Abbreviations:
    """A token table, regex rules, and acronyms that stay upper case."""

    table: dict[str, str] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    keep_upper: frozenset[str] = frozenset()
    _token_re: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        self.table = {k.casefold(): v for k, v in self.table.items()}
        if self.table:
            # Longest first, so R/H/S wins over R/H; tokens end at spaces and punctuation but not at '/'.
            alternatives = "|".join(re.escape(k) for k in sorted(self.table, key=len, reverse=True))
            self._token_re = re.compile(rf"(?<![\w/&@'])(?:{alternatives})(?![\w/&'])", re.IGNORECASE)

    def expand(self, text: str) -> str:
        if self._token_re is not None:
            text = self._token_re.sub(lambda m: self.table[m.group(0).casefold()], text)
        for pattern, replacement in self.patterns:
            text = pattern.sub(replacement, text)
        return text


def _parse(data: Any, label: str) -> Abbreviations:
    if not isinstance(data, dict):
        raise InvalidInput(f"{label}: an abbreviation file is a mapping with `abbreviations`, `patterns` and `keep_upper`")
    unknown = set(data) - {"abbreviations", "patterns", "keep_upper"}
    if unknown:
        raise InvalidInput(f"{label}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (expected abbreviations, patterns, keep_upper)")
    table = data.get("abbreviations") or {}
    if not isinstance(table, dict):
        raise InvalidInput(f"{label}: `abbreviations` must map each abbreviation to its expansion")
    patterns = []
    for i, rule in enumerate(data.get("patterns") or [], 1):
        if not isinstance(rule, dict) or "match" not in rule or "replace" not in rule:
            raise InvalidInput(f"{label}: patterns[{i}] needs `match` and `replace`")
        try:
            patterns.append((re.compile(str(rule["match"]), re.IGNORECASE), str(rule["replace"])))
        except re.error as exc:
            raise InvalidInput(f"{label}: patterns[{i}]: bad regular expression ({exc})") from None
    keep = frozenset(str(a).upper() for a in data.get("keep_upper") or [])
    return Abbreviations({str(k): str(v) for k, v in table.items()}, patterns, keep)


def load_abbreviations(setting: bool | str, base_dir: str | None = None) -> Abbreviations:
    """The shipped list for ``True``, a YAML file for a path, nothing for ``False``."""
    if setting is False:
        return Abbreviations()
    yaml = YAML(typ="safe")
    if setting is True:
        text = resources.files("synthtune.dataprep").joinpath("data", SHIPPED).read_text(encoding="utf-8")
        return _parse(yaml.load(text), f"shipped {SHIPPED}")
    path = Path(setting).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or ".") / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"prepare.abbreviations: cannot read {path} ({exc})") from None
    try:
        return _parse(yaml.load(text), str(path))
    except YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML ({exc})") from None


def abbreviation_file(setting: bool | str, base_dir: str | None) -> Path | None:
    """The user's abbreviation file, whose content is part of the artifact's cache key."""
    if isinstance(setting, bool):
        return None
    path = Path(setting).expanduser()
    return path if path.is_absolute() else Path(base_dir or ".") / path
