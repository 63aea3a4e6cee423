"""Prepare at scale: clean + exact/near dedup + split on records shaped like the shared excavator orders.

Builds N records from the shared excavator work orders (short text, asset, action, failure mode):
new combinations of real texts, with 10 % exact copies and 20 % perturbed copies (typos, case,
punctuation, abbreviations) of earlier records. Runs the stage's own ``prepare_records`` single-
threaded and reports, per size, CPU-seconds per step and rows per minute per core, against the
target of 100,000 rows/min/core, and how near-duplicate time grows from the smallest size
(1.0 = linear).

    PYTHONPATH=services python benchmarks/prepare_scale.py --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import csv
import gc
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

from synthtune.dataprep.pipeline import prepare_records  # noqa: E402
from synthtune.dataprep.rejects import Rejects  # noqa: E402
from synthtune.progress import Progress, ProgressEvent  # noqa: E402
from synthtune.spec.prepare import PrepareSpec  # noqa: E402

TARGET_ROWS_PER_MIN_PER_CORE = 100_000
DATASET = REPO.parent / "shared" / "datasets" / "excavator_work_orders_labelled.csv"
RESULTS = REPO / "benchmarks" / "results" / "prepare_scale.txt"
PHASES = {  # progress description prefix -> reported step
    "normalising whitespace": "clean",
    "redacting personal data": "clean",
    "expanding abbreviations": "clean",
    "dropping incomplete": "filters",
    "dropping exact duplicates": "exact dedup",
    "near-duplicates (Jaccard >= 0.9)": "near dedup",
    "dropping length outliers": "filters",
    "near-duplicate groups": "near groups",
    "splitting": "split",
}


def load_base() -> list[dict[str, str]]:
    with open(DATASET, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["OriginalShorttext"].strip()]
    return [{"text": r["OriginalShorttext"], "asset": r["Asset"], "action": r["Action"] or "Inspect", "fm": r["FM"]} for r in rows]


def perturb(text: str, rng: random.Random) -> str:
    """A re-typed copy of a ticket: a typo, a word added or dropped, often in another case."""
    words = text.split()
    choice = rng.random()
    if choice < 0.4 and len(text) > 8:
        i = rng.randrange(1, len(text) - 1)
        out = text[:i] + text[i + 1] + text[i] + text[i + 2:]
    elif choice < 0.7 or len(words) < 3:
        out = text + " " + rng.choice(["AGAIN", "RECHECK", "URGENT", "AS PER PM", "- SEE NOTES"])
    else:
        del words[rng.randrange(len(words))]
        out = " ".join(words)
    return out.lower() if rng.random() < 0.3 else out


def make_records(n: int, base: list[dict[str, str]], seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    for i in range(n):
        roll = rng.random()
        if records and roll < 0.10:
            src = rng.choice(records)
            fields = dict(src["fields"])
        elif records and roll < 0.30:
            src = rng.choice(records)
            fields = dict(src["fields"], problem=perturb(src["fields"]["problem"], rng))
        else:
            a, b = rng.choice(base), rng.choice(base)
            problem = f"{a['text']} - {b['text'].split(' ', 1)[-1]} AT {rng.choice(['BOOM', 'STICK', 'SWING', 'CAB', 'TRACK'])} {rng.randint(1, 99)}"
            fields = {"problem": problem, "machine": f"{a['asset']}{rng.randint(1, 40)}", "solution": a["action"],
                      "failure_mode": a["fm"] or None}
        records.append({"id": f"orders.csv:{i + 2}", "type": "record", "fields": fields, "text": "", "source": {"file": "orders.csv", "row": i + 2}})
    return records


def run_size(n: int, base: list[dict[str, str]]) -> dict[str, Any]:
    records = make_records(n, base)
    gc.collect()
    marks: list[tuple[str, float]] = []

    def listen(event: ProgressEvent) -> None:
        for prefix, phase in PHASES.items():
            if event.description.startswith(prefix) and (not marks or marks[-1][0] != phase):
                marks.append((phase, time.process_time()))

    spec = PrepareSpec.model_validate({"dedup": {"exact": True, "near": 0.9}})
    rejects = Rejects()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    prepared = prepare_records(records, spec, rejects, Progress("bench", [listen]))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    kept = sum(len(v) for v in prepared.splits.values())
    assert n == kept + len(rejects), "input must equal kept + rejected"
    steps: dict[str, float] = {}
    ends = [t for _, t in marks[1:]] + [cpu0 + cpu]
    for (phase, start), end in zip(marks, ends, strict=True):
        steps[phase] = steps.get(phase, 0.0) + end - start
    return {
        "n": n, "cpu_s": cpu, "wall_s": wall, "steps": steps, "kept": kept, "rejected": rejects.by_code(),
        "splits": {k: len(v) for k, v in prepared.splits.items()}, "groups": prepared.extra_stats["split_groups"],
        "rows_per_min_core": n / cpu * 60, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated record counts, smallest first")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the report (also printed)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    base = load_base()
    lines = [f"prepare_scale: {len(base)} excavator work orders as the base; single process, CPU time; "
             f"target {TARGET_ROWS_PER_MIN_PER_CORE:,} rows/min/core", ""]
    print(lines[0], flush=True)
    results = []
    for n in sizes:
        r = run_size(n, base)
        results.append(r)
        step_text = ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items())
        block = [
            f"{n:>9,} rows: {r['cpu_s']:.1f} s CPU ({r['wall_s']:.1f} s wall), {r['rows_per_min_core']:,.0f} rows/min/core "
            f"= {r['rows_per_min_core'] / TARGET_ROWS_PER_MIN_PER_CORE:.2f}x target; max RSS {r['max_rss_mb']:,.0f} MB",
            f"           steps (CPU): {step_text}",
            f"           kept {r['kept']:,} {r['splits']}; rejected {r['rejected']}",
            f"           near-duplicate groups in the split: {r['groups']}",
        ]
        print("\n".join(block), flush=True)
        lines += block
    if len(results) > 1:
        small = results[0]
        lines.append("")
        for r in results[1:]:
            size_ratio = r["n"] / small["n"]
            near_ratio = r["steps"]["near dedup"] / small["steps"]["near dedup"]
            group_ratio = r["steps"]["near groups"] / small["steps"]["near groups"]
            total_ratio = r["cpu_s"] / small["cpu_s"]
            line = (f"growth {small['n']:,} -> {r['n']:,} rows (x{size_ratio:g}): near-dedup time x{near_ratio:.2f} "
                    f"(per row x{near_ratio / size_ratio:.2f}; 1.00 = linear), near-dup grouping x{group_ratio:.2f} "
                    f"(per row x{group_ratio / size_ratio:.2f}), all steps x{total_ratio:.2f} (per row x{total_ratio / size_ratio:.2f})")
            print(line)
            lines.append(line)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
