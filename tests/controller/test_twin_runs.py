"""Campaign "two identical runs at once": two runs of one spec, started together on one store by two
executors (as two controllers or two `synthtune run` would), both succeed and every artifact verifies.
The stages are the executor's doubles (tests/controller/fakes.py): each writes its artifact through the
real store, so both runs race to commit the same artifact ids."""

from __future__ import annotations

import threading

import pytest

from synthtune.controller import Executor, RunBook
from synthtune.spec import load_spec_text

from .fakes import SPEC, make_stages


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from synthtune.store import open_store

    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))
    if request.param == "file":
        return open_store(str(tmp_path / "store"))
    return open_store(request.getfixturevalue("s3_store_uri"))


def test_two_identical_runs_started_at_once_both_succeed_and_verify(tmp_path, store):
    spec = load_spec_text(SPEC)
    runs = []
    for n in range(2):
        book = RunBook(store)
        ex = Executor(store, book, make_stages(tmp_path / f"calls-{n}.txt", sleep_s=0.2), backoff_s=0.05)
        runs.append((ex, book.create(spec, SPEC, None).run_id))
    barrier = threading.Barrier(2)
    records: dict[int, object] = {}

    def go(n: int) -> None:
        ex, run_id = runs[n]
        barrier.wait()
        records[n] = ex.execute(run_id)

    threads = [threading.Thread(target=go, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(records) == {0, 1}, "a run did not finish within 120 s"
    for n, record in records.items():
        assert record.status == "succeeded", (n, record.error, {s: (i.state, i.message) for s, i in record.stages.items()})
        assert store.get_json(f"runs/{record.run_id}/run.json")["status"] == "succeeded"
        assert store.exists(f"runs/{record.run_id}/report.html")
    first, second = records[0], records[1]
    for name in first.stages:  # one pipeline, one set of artifacts: each id committed once, read by both runs
        assert first.stages[name].artifact == second.stages[name].artifact, name
        if first.stages[name].artifact:
            art = store.open(first.stages[name].artifact["id"])
            art.download()  # every file fetched and its sha256 checked against the manifest
            assert art.stats == {"records": 3, "rejected": 1}, name
    assert not [k for k in store.list_keys("artifacts/") if k.endswith("/.commit")]  # no claim left behind
