"""Shared base for spec models: unknown keys refused, help text required on every field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SpecModel(BaseModel):
    """Strict model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)


def field(default: Any = ..., help: str = "", **kwargs: Any) -> Any:
    """A pydantic Field whose help text lands in the JSON Schema as ``description``."""
    if not help:
        raise ValueError("every spec field needs help text")
    return Field(default, description=help, **kwargs)
