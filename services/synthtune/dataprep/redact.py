"""Personal data redaction: e-mails, phone numbers, configured id patterns and listed person names."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.spec.prepare import RedactSpec

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
# A phone number: optional +CC or 00CC, an optional (area) code, then digit groups split by
# spaces, dots or dashes. Dates, costs and part numbers are filtered out in _is_phone.
PHONE = re.compile(r"(?<![\w+/.-])(?:(?:\+|00)\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,12}(?:[\s.-]\d{2,8}){0,5}(?![\w/-]|\.\d)")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


def _is_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if digits < 8 or digits > 15 or _DATE.match(candidate):
        return False
    # A bare run of digits is a serial or order number unless it is dialled like a phone number.
    if candidate.isdigit():
        return candidate.startswith("0") and digits >= 9
    if candidate.startswith(("+", "00", "(", "0")):
        return True
    # Space-separated numbers are usually sizes or counts ("hoses 12 16 20 24"); 555-123-4567 is dialled.
    return len(re.findall(r"\d+", candidate)) >= 3 and not re.search(r"\s", candidate)


def load_names(spec: RedactSpec, base_dir: str | None) -> list[str]:
    names = [n.strip() for n in spec.names if n.strip()]
    if spec.names_file:
        path = Path(spec.names_file).expanduser()
        path = path if path.is_absolute() else Path(base_dir or ".") / path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"prepare.redact.names_file: cannot read {path} ({exc})") from None
        names += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return names


class Redactor:
    """Replaces personal data with ``[EMAIL]``, ``[PHONE]``, ``[NAME]`` or ``[LABEL]``; counts what it replaced."""

    def __init__(self, spec: RedactSpec, names: list[str]) -> None:
        self.spec = spec
        self.counts: Counter[str] = Counter()
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for label, pattern in spec.patterns.items():
            try:
                self.patterns.append((label.upper(), re.compile(pattern)))
            except re.error as exc:
                raise InvalidInput(f"prepare.redact.patterns.{label}: bad regular expression ({exc})") from None
        self.names: re.Pattern[str] | None = None
        if names:
            alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
            self.names = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def _sub(self, label: str, pattern: re.Pattern[str], text: str) -> str:
        def replace(m: re.Match[str]) -> str:
            self.counts[label] += 1
            return f"[{label}]"

        return pattern.sub(replace, text)

    def _phones(self, text: str) -> str:
        def replace(m: re.Match[str]) -> str:
            if not _is_phone(m.group(0)):
                return m.group(0)
            self.counts["PHONE"] += 1
            return "[PHONE]"

        return PHONE.sub(replace, text)

    def redact(self, text: str) -> str:
        # Configured patterns first: an employee number must not be half-eaten as a phone number.
        for label, pattern in self.patterns:
            text = self._sub(label, pattern, text)
        if self.spec.emails:
            text = self._sub("EMAIL", EMAIL, text)
        if self.spec.phones:
            text = self._phones(text)
        if self.names is not None:
            text = self._sub("NAME", self.names, text)
        return text

    def redact_record(self, record: dict[str, Any]) -> None:
        fields = record.get("fields") or {}
        for name, value in fields.items():
            if isinstance(value, str):
                fields[name] = self.redact(value)
        if record.get("text"):
            record["text"] = self.redact(record["text"])
