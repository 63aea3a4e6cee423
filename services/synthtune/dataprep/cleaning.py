"""Text cleaning: whitespace and Unicode normalisation, abbreviation expansion, shouting to sentence case."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from synthtune.dataprep.abbreviations import Abbreviations

_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff\x00-\x08\x0b\x0e-\x1f\x7f]")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_TOKEN = re.compile(r"\S+")
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]*\]")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")


def normalize_whitespace(text: str) -> str:
    """NFC, no invisible characters, single spaces, at most one blank line, trimmed."""
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


def is_shouting(text: str, min_letters: int = 4, share: float = 0.8) -> bool:
    """Mostly upper-case letters: exported shorthand such as ``L/H BUCKET CYL LEAKING``."""
    letters = sum(map(str.isalpha, text))
    if letters < min_letters:
        return False
    return sum(map(str.isupper, text)) / letters >= share


def _keep_token_case(token: str, keep_upper: frozenset[str]) -> bool:
    core = token.strip(".,;:!?()\"'")
    if _PLACEHOLDER.fullmatch(core):
        return True
    if any(c.isdigit() for c in core) and any(c.isalpha() for c in core):
        return True  # part and model numbers: PM01, D11R, 4N-1234
    return core.upper() in keep_upper


def sentence_case(text: str, keep_upper: frozenset[str] = frozenset()) -> str:
    """Lower-case every word but codes and listed acronyms, then capitalise each sentence."""
    lowered = _TOKEN.sub(lambda m: m.group(0) if _keep_token_case(m.group(0), keep_upper) else m.group(0).lower(), text)
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), lowered)


class Cleaner:
    """Applies the configured cleaning to a record's text fields (and trims the others)."""

    def __init__(self, abbreviations: Abbreviations, normalize_case: bool, text_fields: list[str]) -> None:
        self.abbreviations = abbreviations
        self.normalize_case = normalize_case
        self.text_fields = frozenset(text_fields)

    def clean_text(self, text: str) -> str:
        shouting = self.normalize_case and is_shouting(text)
        text = self.abbreviations.expand(text)
        if shouting:
            text = sentence_case(text, self.abbreviations.keep_upper)
        return text

    def clean_record(self, record: dict[str, Any]) -> bool:
        """Clean in place; True when anything changed."""
        changed = False
        fields = record.get("fields") or {}
        for name, value in fields.items():
            if name in self.text_fields and isinstance(value, str):
                new = self.clean_text(value)
                if new != value:
                    fields[name] = new
                    changed = True
        return changed


def whitespace_record(record: dict[str, Any]) -> None:
    """Normalise whitespace in every text field and the text, in place; empty becomes None."""
    fields = record.get("fields") or {}
    for name, value in fields.items():
        if isinstance(value, str):
            fields[name] = normalize_whitespace(value) or None
    if record.get("text"):
        record["text"] = normalize_whitespace(record["text"])
