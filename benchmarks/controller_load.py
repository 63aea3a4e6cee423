"""100 small concurrent runs on one controller with stages stubbed to sleep (benchmark only).

Run: PYTHONPATH=services python benchmarks/controller_load.py [--runs 100] [--sleep 0.05]
Prints errors (target 0) and the controller's own time per stage transition (target < 50 ms),
measured as wall time per stage minus the stubbed sleep.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path


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
    ex = Executor(store, book, make_stages(work / "calls.txt", sleep_s=args.sleep))
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
                overheads.append(info["seconds"] - (args.sleep if name != "report" else 0.0))
    print(f"runs: {args.runs}, concurrent: {args.workers}, stage sleep: {args.sleep * 1000:.0f} ms, wall: {wall:.1f} s")
    print(f"errors: {len(errors)}")
    print(f"controller time per stage transition: median {statistics.median(overheads) * 1000:.1f} ms, "
          f"p95 {sorted(overheads)[int(0.95 * len(overheads))] * 1000:.1f} ms over {len(overheads)} stages")
    print("target: 0 errors, < 50 ms per transition")


if __name__ == "__main__":
    main()
