"""Job requests kept in the store, so a Kubernetes Job (or `kubectl apply`) needs only a URI."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlparse

from synthtune.errors import InvalidInput
from synthtune.store.store import Store, open_store


def split_request_uri(uri: str) -> tuple[str, str]:
    """(store URI, key) from ``<store>/requests/<name>.json``."""
    marker = "/requests/"
    if marker not in uri or not uri.endswith(".json"):
        raise InvalidInput(f"request URI {uri!r}: expected <store>/requests/<name>.json, e.g. s3://bucket/synthtune/requests/train-1.json")
    root, name = uri.rsplit(marker, 1)
    if urlparse(root).scheme == "file":
        root = urlparse(root).path
    return root, f"requests/{name}"


def write_request(store: Store, stage: str, request: dict[str, Any], name: str | None = None) -> str:
    """Store a job request; return the URI to pass as ``--request``."""
    key = f"requests/{name or f'{stage}-{uuid.uuid4().hex[:12]}'}.json"
    store.put_json(key, {"stage": stage, **request})
    return f"{store.uri}/{key}"


def result_key(request_key: str) -> str:
    """Where a Job writes how its request ended, beside the request: ``requests/<name>.result.json``."""
    return request_key.removesuffix(".json") + ".result.json"


def read_request(uri: str, store: Store | None = None) -> tuple[Store, dict[str, Any]]:
    """The store and the request at ``uri`` (``store``: the request's store, when already open)."""
    root, key = split_request_uri(uri)
    store = store or open_store(root)
    data = store.get_json(key)
    if not isinstance(data, dict) or "spec_yaml" not in data:
        raise InvalidInput(f"request {uri}: not a synthtune job request (needs spec_yaml, inputs, ...): {json.dumps(data)[:200]}")
    return store, data
