"""Decontamination: reject examples that share word n-grams with the prepared test split."""

from __future__ import annotations

from typing import Any

from synthtune.generator.text import ngrams, words
from synthtune.records import KNOWN_FIELDS


def test_segments(record: dict[str, Any]) -> list[str]:
    """The test record's own content (not the question/answer templates every record shares)."""
    fields = record.get("fields") or {}
    texts = [str(fields.get(name) or "") for name in KNOWN_FIELDS if name not in ("machine", "hours")]
    texts += [str(v) for k, v in fields.items() if k not in KNOWN_FIELDS and isinstance(v, str)]
    texts.append(str(record.get("text") or ""))
    return [t for t in texts if t.strip()]


class Decontaminator:
    """An index of test n-grams; texts shorter than ``n`` words (but at least ``n_min``) match whole."""

    def __init__(self, test_records: list[dict[str, Any]], n: int, n_min: int) -> None:
        self.n = n
        self.segments: list[tuple[str, set[tuple[str, ...]]]] = []
        self.index: dict[int, dict[tuple[str, ...], int]] = {}  # gram length -> gram -> segment number
        self.skipped_short = 0
        for record in test_records:
            for text in test_segments(record):
                tokens = words(text)
                size = n if len(tokens) >= n else len(tokens)
                if size < n_min:
                    self.skipped_short += 1
                    continue
                grams = ngrams(tokens, size)
                self.segments.append((str(record.get("id")), grams))
                table = self.index.setdefault(size, {})
                for gram in grams:
                    table.setdefault(gram, len(self.segments) - 1)

    def match(self, text: str) -> tuple[str, float] | None:
        """(test record id, share of that test text's n-grams found) for the first overlap, or None."""
        tokens = words(text)
        for size, table in self.index.items():
            found = ngrams(tokens, size)
            for gram in found:
                if gram in table:
                    test_id, grams = self.segments[table[gram]]
                    return test_id, round(len(grams & found) / len(grams), 3)
        return None
