"""100 small concurrent runs on one controller with stages stubbed to sleep (benchmark only).

Run: PYTHONPATH=services python benchmarks/controller_load.py [--runs 100] [--sleep 0.05]
Prints errors (target 0) and the controller's own time per stage transition (target < 50 ms),
measured as wall time per stage minus the time inside the stubbed stage (record writes, events, cache checks),
and the hand-over from one stage's end to the next one's start (the scheduler's latency).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "controller"))
    from fakes import SPEC, make_stages  # type: ignore[import-not-found]

    from synthtune.controller import Executor, RunBook
    from synthtune.spec import load_spec_text
    from synthtune.store import open_store

    work = Path(tempfile.mkdtemp(prefix="controller-load-"))
    store = open_store(str(work / "store"))
    book = RunBook(store)
    spent: dict[tuple[str, str], float] = {}  # (run name, stage) -> seconds inside the stubbed stage itself

    def timed(kind: str, fn: Any) -> Any:
        def call(*a: Any, **kw: Any) -> Any:
            spec_arg = a[2] if kind == "report" else a[0]
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[(spec_arg.name, f"{kind}:{kw['method']}" if "method" in kw else kind)] = time.perf_counter() - t0

        return call

    stages = {kind: timed(kind, fn) for kind, fn in make_stages(work / "calls.txt", sleep_s=args.sleep).items()}
    ex = Executor(store, book, stages)
    spec = load_spec_text(SPEC)
    # Each run gets its own name so nothing is served from another run's cache.
    ids = [book.create(spec.model_copy(update={"name": f"load{i}"}), SPEC.replace("name: fake", f"name: load{i}"), None)["run_id"]
           for i in range(args.runs)]
    t = time.perf_counter()
    with futures.ThreadPoolExecutor(args.workers) as pool:
        records = list(pool.map(ex.execute, ids))
    wall = time.perf_counter() - t
    errors = [r["run_id"] for r in records if r["status"] != "succeeded"]
    overheads = []
    for r in records:
        for name, info in r["stages"].items():
            if "seconds" in info:
                overheads.append(info["seconds"] - spent[(r["name"], name)])
    # Hand-over latency: from one stage's stage_finished event to the next stage's stage_started.
    import datetime as dt

    gaps = []
    for r in records:
        last_finish = None
        for ev in sorted(r["events"], key=lambda e: e["seq"]):
            at = dt.datetime.fromisoformat(ev["time"]).timestamp()
            if ev["type"] == "stage_finished":
                last_finish = at
            elif ev["type"] == "stage_started" and last_finish is not None:
                gaps.append(at - last_finish)
    print(f"runs: {args.runs}, concurrent: {args.workers}, stage sleep: {args.sleep * 1000:.0f} ms, wall: {wall:.1f} s")
    print(f"errors: {len(errors)}")
    print(f"controller time per stage transition: median {statistics.median(overheads) * 1000:.1f} ms, "
          f"p95 {sorted(overheads)[int(0.95 * len(overheads))] * 1000:.1f} ms over {len(overheads)} stages")
    print(f"hand-over from a finished stage to the next: median {statistics.median(gaps) * 1000:.1f} ms, "
          f"p95 {sorted(gaps)[int(0.95 * len(gaps))] * 1000:.1f} ms over {len(gaps)} hand-overs")
    print("target: 0 errors, < 50 ms per transition")


if __name__ == "__main__":
    main()
