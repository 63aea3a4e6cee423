"""Validation of store keys: relative, no traversal, no control characters."""

from __future__ import annotations

import re

from synthtune.errors import InvalidInput

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative store key, else raise InvalidInput naming it."""
    if not key or not isinstance(key, str):
        raise InvalidInput(f"store key {key!r}: must be a non-empty string")
    if _CONTROL.search(key):
        raise InvalidInput(f"store key {key!r}: control characters are not allowed")
    if key.startswith("/") or key.startswith("\\") or re.match(r"^[A-Za-z]:", key):
        raise InvalidInput(f"store key {key!r}: absolute paths are not allowed")
    parts = key.replace("\\", "/").split("/")
    if any(p in ("..", ".") for p in parts):
        raise InvalidInput(f"store key {key!r}: '.' and '..' segments are not allowed")
    if any(p == "" for p in parts):
        raise InvalidInput(f"store key {key!r}: empty path segments are not allowed")
    return key
