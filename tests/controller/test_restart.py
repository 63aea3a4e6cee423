"""SIGKILL the controller mid-run, restart it: the run finishes, no finished stage is redone."""

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

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

CONTROLLER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from pathlib import Path
    from fakes import make_stages, SPEC
    from synthtune.controller import Executor, RunBook
    from synthtune.spec import load_spec_text
    from synthtune.store import open_store

    import time
    from synthtune.controller.config import ControllerConfig

    store = open_store(sys.argv[1])
    book = RunBook(store)
    # A killed controller leaves a fresh heartbeat: the next one waits until it is stale (1 s here).
    ex = Executor(store, book, make_stages(Path(sys.argv[2]), sleep_s=0.6), config=ControllerConfig(stale_after_s=1.0, poll_s=0.1))
    pending = [r.run_id for r in book.list() if r.status in ("pending", "running")]  # what the last controller left
    if not pending:
        pending = [book.create(load_spec_text(SPEC), SPEC, None).run_id]
    print("RUN", pending[0], flush=True)
    for run_id in pending:
        while not ex.orphaned(book.load(run_id)):
            time.sleep(0.1)
        ex.execute(run_id)
    print("DONE", flush=True)
    """
)


def _start(store_uri: str, count: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "services"), SYNTHTUNE_CACHE=str(tmp_path / "cache"))
    return subprocess.Popen([sys.executable, "-c", CONTROLLER, store_uri, str(count), str(Path(__file__).parent)],
                            env=env, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_sigkill_mid_run_then_restart_finishes_without_redoing(tmp_path, backend, request):
    store_uri = str(tmp_path / "store") if backend == "file" else request.getfixturevalue("s3_store_uri")
    count = tmp_path / "calls.txt"
    proc = _start(store_uri, count, tmp_path)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    deadline = time.time() + 60
    while time.time() < deadline and len(count.read_text().split() if count.exists() else []) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = count.read_text().split()
    assert "report" not in before

    restarted = _start(store_uri, count, tmp_path)
    out, _ = restarted.communicate(timeout=120)
    assert f"RUN {run_id}" in out and "DONE" in out
    after = count.read_text().split()[len(before):]
    # Finished stages are not redone: only the one in flight at the kill may run again.
    finished_before = before[:-1]
    assert not set(finished_before) & set(after), (before, after)
    assert after[-1] == "report"

    from synthtune.store import open_store

    os.environ.setdefault("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    record = open_store(store_uri).get_json(f"runs/{run_id}/run.json")
    assert record["status"] == "succeeded"
    assert all(info["state"] in ("succeeded", "cached") for info in record["stages"].values())
    assert json.dumps(record)  # the record stayed valid JSON through the kill
