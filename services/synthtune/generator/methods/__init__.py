"""Generation methods, registered by name; YAML refers to them as ``generate.methods[].name``."""

from __future__ import annotations

from synthtune.errors import InvalidInput
from synthtune.generator.methods.base import Candidate, GenContext, Method, Plan, RecordFailed

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise InvalidInput(f"unknown generation method {name!r} (registered: {', '.join(sorted(METHODS))})")
    return METHODS[name]


# Importing the modules registers them.
from synthtune.generator.methods import direct, document_qa, event_scenario, evol, persona, record_qa  # noqa: E402,F401

__all__ = ["METHODS", "Candidate", "GenContext", "Method", "Plan", "RecordFailed", "get_method", "register"]
