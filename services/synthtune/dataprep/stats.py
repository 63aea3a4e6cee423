"""Statistics and plots of a prepared dataset (length histogram and box plot, as in the thesis)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from synthtune.records import KNOWN_FIELDS, combined_length, field_text


def completeness(records: list[dict[str, Any]]) -> dict[str, float]:
    rows = [r for r in records if r.get("type") == "record"]
    if not rows:
        return {}
    names = sorted({k for r in rows for k in (r.get("fields") or {})})
    return {n: round(sum(1 for r in rows if field_text(r, n)) / len(rows), 4) for n in names}


def top_values(records: list[dict[str, Any]], name: str, k: int = 10) -> list[list[Any]]:
    counts = Counter(field_text(r, name) for r in records if field_text(r, name))
    return [[value, n] for value, n in counts.most_common(k)]


def length_summary(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    s = sorted(lengths)

    def q(p: float) -> float:
        idx = (len(s) - 1) * p
        lo, hi = int(idx), min(int(idx) + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (idx - lo)

    return {"min": s[0], "q1": q(0.25), "median": q(0.5), "q3": q(0.75), "max": s[-1], "mean": round(sum(s) / len(s), 2)}


def plot_lengths(splits: dict[str, list[dict[str, Any]]], out_dir: Path) -> list[str]:
    """Write length_histogram.png and length_boxplot.png; return their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {name: [combined_length(r) for r in rows] for name, rows in splits.items() if rows}
    if not data:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(list(data.values()), bins=30, label=list(data), stacked=True)
    ax.set_xlabel("characters (prompt + answer fields)")
    ax.set_ylabel("records")
    ax.set_title("Record length by split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "length_histogram.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.boxplot(list(data.values()), tick_labels=list(data), orientation="horizontal")
    ax.set_xlabel("characters (prompt + answer fields)")
    ax.set_title("Record length distribution")
    fig.tight_layout()
    fig.savefig(out_dir / "length_boxplot.png", dpi=100)
    plt.close(fig)
    return ["length_histogram.png", "length_boxplot.png"]


def dataset_stats(splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    everything = [r for rows in splits.values() for r in rows]
    return {
        "splits": {name: len(rows) for name, rows in splits.items()},
        "types": dict(Counter(r.get("type", "record") for r in everything)),
        "completeness": completeness(everything),
        "length": {name: length_summary([combined_length(r) for r in rows]) for name, rows in splits.items()},
        "top_machines": top_values(everything, "machine"),
        "top_failure_modes": top_values(everything, "cause"),
        "known_fields": list(KNOWN_FIELDS),
    }
