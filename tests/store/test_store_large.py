"""A 200 MB artifact streams through the store in bounded memory; a killed upload stays invisible.

Both run the store in a child process: the moto server lives in this one, so only a child's
memory is the store's alone, and only a child can be SIGKILLed mid-commit.
"""

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

from store_view import artifact_ids
from synthtune.errors import NotFound
from synthtune.store import open_store

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc"),
]
REPO = Path(__file__).resolve().parents[2]
SIZE = 200 * 1024 * 1024

ROUND_TRIP = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import psutil
    from synthtune.store import open_store

    def peak_rss():
        # VmHWM belongs to this process's own address space; getrusage's ru_maxrss can carry
        # the parent's peak across exec, which is the pytest process holding moto's objects.
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

    size = int(sys.argv[2])
    store = open_store(sys.argv[1])
    w = store.create("prepared", [], {"big": 1}, "test")
    h = hashlib.sha256()
    with open(w.path("big.bin"), "wb") as f:
        for i in range(size // 2**20):
            block = os.urandom(2**20)
            h.update(block)
            f.write(block)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current RSS
    base = psutil.Process().memory_info().rss  # everything imported, the file written
    ref = w.commit()
    path = store.open(ref).local_path("big.bin")  # streamed download; raises unless its sha256 matches
    peak = peak_rss()
    print(json.dumps({
        "growth_mb": (peak - base) / 2**20,
        "bytes": path.stat().st_size,
        "sha_ok": store.open(ref).files["big.bin"]["sha256"] == h.hexdigest(),
    }))
    """
)

KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    from synthtune.store import open_store
    store = open_store(sys.argv[1])
    w = store.create("prepared", [], {"killed": 1}, "test")
    w.write_json("a-first.json", {"small": True})  # sorted first: its arrival says the commit is under way
    for i in range(40):
        with open(w.path(f"part-{i:02d}.bin"), "wb") as f:
            f.write(os.urandom(4 * 1024 * 1024))
    print(w.id, flush=True)
    w.commit()
    print("committed", flush=True)
    """
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "services")
    env["SYNTHTUNE_CACHE"] = str(tmp_path / "child-cache")
    (tmp_path / "child-tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp_path / "child-tmp")  # a killed writer's staging folder goes with the test's folder, not /tmp
    return env


def test_200mb_round_trip_streams_in_bounded_memory(store_uri, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, store_uri, str(SIZE)],
        env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bytes"] == SIZE and result["sha_ok"]
    assert result["growth_mb"] < 100, result


def test_upload_killed_midway_leaves_nothing_visible(store_uri, tmp_path):
    store = open_store(store_uri)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, store_uri], env=_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        art_id = proc.stdout.readline().strip()
        assert art_id.startswith("prepared-"), art_id
        deadline = time.monotonic() + 60
        while not store.backend.exists(f"artifacts/{art_id}/a-first.json"):  # the commit has begun
            assert time.monotonic() < deadline and proc.poll() is None, "the writer never started its commit"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL  # killed mid-commit, not finished
    uploaded = list(store.list_keys(f"artifacts/{art_id}"))
    assert f"artifacts/{art_id}/a-first.json" in uploaded and f"artifacts/{art_id}/manifest.json" not in uploaded
    assert store.find(art_id) is None
    assert art_id not in artifact_ids(store)
    with pytest.raises(NotFound, match="did not finish"):
        store.open(art_id)
    # A rerun of the same work commits over the debris and is complete.
    with store.create("prepared", [], {"killed": 1}, "test") as w:
        w.write_json("a-first.json", {"small": True})
        assert w.commit().id == art_id
    assert set(store.open(art_id).files) == {"a-first.json"}
    assert list(store.list_keys(f"artifacts/{art_id}")) == [f"artifacts/{art_id}/a-first.json", f"artifacts/{art_id}/manifest.json"]
