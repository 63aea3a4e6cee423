"""Exact and near-duplicate detection; near-duplicate groups keep splits leak-free."""

from __future__ import annotations

import hashlib
import re

from synthtune.llm.similarity import minhash_groups as near_duplicate_groups

_TOKEN = re.compile(r"\w+")


def exact_key(text: str) -> str:
    return hashlib.sha1(" ".join(_TOKEN.findall(text.lower())).encode()).hexdigest()


__all__ = ["exact_key", "near_duplicate_groups"]
