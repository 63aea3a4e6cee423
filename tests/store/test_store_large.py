"""A 200 MB artifact streams through the store in bounded memory; a killed upload stays invisible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from synthtune.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]

ROUND_TRIP = textwrap.dedent(
    """
    import json, os, sys, psutil
    from synthtune.store import open_store
    size = 200 * 1024 * 1024
    store = open_store(sys.argv[1])
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = base
    with store.create("prepared", [], {"big": 1}, "test") as w:
        with open(w.path("big.bin"), "wb") as f:
            block = os.urandom(1024 * 1024)
            for _ in range(size // len(block)):
                f.write(block)
        peak = max(peak, proc.memory_info().rss)
        ref = w.commit()
    peak = max(peak, proc.memory_info().rss)
    path = store.open(ref).local_path("big.bin")
    peak = max(peak, proc.memory_info().rss)
    print(json.dumps({"growth_mb": (peak - base) / 2**20, "bytes": path.stat().st_size}))
    """
)

KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    from synthtune.store import open_store
    store = open_store(sys.argv[1])
    w = store.create("prepared", [], {"killed": 1}, "test")
    for i in range(40):
        with open(w.path(f"part-{i:02d}.bin"), "wb") as f:
            f.write(os.urandom(4 * 1024 * 1024))
    print(w.id, flush=True)
    w.commit()
    """
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "services")
    env["SYNTHTUNE_CACHE"] = str(tmp_path / "cache")
    return env


@pytest.fixture(params=["file", "s3"])
def store_uri(request, tmp_path):
    if request.param == "file":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_store_uri")


def test_200mb_round_trip_streams(store_uri, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, store_uri], env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bytes"] == 200 * 1024 * 1024
    assert result["growth_mb"] < 100, result


def test_upload_killed_midway_leaves_nothing_visible(store_uri, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, store_uri], env=_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    art_id = proc.stdout.readline().strip()
    time.sleep(0.3)  # the commit is uploading its 160 MB now
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    os.environ.setdefault("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    store = open_store(store_uri)
    assert art_id.startswith("prepared-")
    assert store.find(art_id) is None
    assert art_id not in list(store.list_artifacts())
