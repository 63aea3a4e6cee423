"""Text cleaning: whitespace, shouting case, maintenance shorthand, and personal data redaction."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ruamel.yaml import YAML

from synthtune.errors import InvalidInput
from synthtune.spec.prepare import RedactSpec

_WS = re.compile(r"\s+")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# Phone numbers: an optional +country code, then 7+ digits with spaces, dots, dashes or brackets.
PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){2,4}(?![\w.])")


def normalize_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def sentence_case(text: str) -> str:
    """ALL-CAPS shorthand to sentence case; mixed-case text is left as written."""
    letters = [c for c in text if c.isalpha()]
    if not letters or sum(c.isupper() for c in letters) / len(letters) < 0.8:
        return text
    lowered = text.lower()
    return lowered[:1].upper() + lowered[1:]


@lru_cache(maxsize=8)
def load_abbreviations(source: str | None = None) -> tuple[tuple[re.Pattern[str], str], ...]:
    """Compiled (pattern, expansion) pairs, longest shorthand first; the shipped list by default."""
    yaml = YAML(typ="safe")
    if source is None:
        text = resources.files("synthtune.dataprep").joinpath("data/abbreviations.yaml").read_text(encoding="utf-8")
        where = "the shipped abbreviation list"
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"prepare.abbreviations: no such file {source}")
        text, where = path.read_text(encoding="utf-8"), source
    data = yaml.load(text) or {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: expected a mapping of shorthand to expansion")
    pairs = []
    for short in sorted(data, key=lambda s: -len(str(s))):
        pattern = re.compile(r"(?<![\w/])" + re.escape(str(short)) + r"(?![\w/])", re.IGNORECASE)
        pairs.append((pattern, str(data[short])))
    return tuple(pairs)


def expand_abbreviations(text: str, pairs: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, expansion in pairs:
        if pattern.search(text):
            text = pattern.sub(expansion, text)
    return text


class Redactor:
    """Replaces e-mails, phones, configured patterns and listed names with placeholders."""

    def __init__(self, spec: RedactSpec, base_dir: str | None = None) -> None:
        self.rules: list[tuple[re.Pattern[str], str]] = []
        if spec.emails:
            self.rules.append((EMAIL, "[EMAIL]"))
        for label, regex in spec.patterns.items():
            try:
                self.rules.append((re.compile(regex), f"[{label.upper()}]"))
            except re.error as exc:
                raise InvalidInput(f"prepare.redact.patterns.{label}: not a valid regular expression: {exc}") from None
        if spec.phones:
            self.rules.append((PHONE, "[PHONE]"))
        names = list(spec.names)
        if spec.names_file:
            path = Path(spec.names_file)
            if not path.is_absolute() and base_dir:
                path = Path(base_dir) / path
            if not path.is_file():
                raise InvalidInput(f"prepare.redact.names_file: no such file {path}")
            names += [n.strip() for n in path.read_text(encoding="utf-8").splitlines() if n.strip()]
        if names:
            alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
            self.rules.append((re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE), "[NAME]"))

    def __call__(self, text: str) -> tuple[str, int]:
        count = 0
        for pattern, placeholder in self.rules:
            text, n = pattern.subn(placeholder, text)
            count += n
        return text, count
