"""Store fixtures: every behaviour is checked on file:// and on S3 (moto's server + the minio client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthtune.store import Store, open_store


@pytest.fixture(params=["file", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    if request.param == "file":
        return str(tmp_path / "store")
    return str(request.getfixturevalue("s3_store_uri"))


@pytest.fixture
def store(store_uri: str) -> Store:
    return open_store(store_uri)
