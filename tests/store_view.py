"""What a store holds, read through its keys: tests look at it this way, the product never lists artifacts."""

from __future__ import annotations

from typing import Any


def artifact_ids(store: Any, kind: str | None = None) -> list[str]:
    """Ids of the complete artifacts (those with a manifest), optionally of one kind, sorted."""
    ids = {key.split("/")[1] for key in store.list_keys("artifacts/") if key.count("/") == 2 and key.endswith("/manifest.json")}
    return sorted(i for i in ids if kind is None or i.startswith(kind + "-"))
