"""Length histogram and per-split box plot (PNG), like the reference thesis's dataset figure."""

from __future__ import annotations

from pathlib import Path

HISTOGRAM = "length_histogram.png"
BOXPLOT = "length_boxplot.png"


def write_length_plots(lengths: dict[str, list[int]], folder: Path) -> list[str]:
    """Write both figures into ``folder``; ``lengths`` maps split name to combined lengths."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in Jobs
    import matplotlib.pyplot as plt

    names = [n for n, v in lengths.items() if v]
    everything = [x for v in lengths.values() for x in v]

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if everything:
        ax.hist([lengths[n] for n in names], bins=50, stacked=True, label=names)
        ax.legend()
    ax.set_xlabel("combined prompt + answer length (characters)")
    ax.set_ylabel("records")
    ax.set_title(f"Length distribution ({len(everything):,} records)")
    fig.tight_layout()
    fig.savefig(folder / HISTOGRAM)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if names:
        ax.boxplot([lengths[n] for n in names], tick_labels=[f"{n}\n(n={len(lengths[n]):,})" for n in names])
    ax.set_ylabel("combined length (characters)")
    ax.set_title("Combined length per split")
    fig.tight_layout()
    fig.savefig(folder / BOXPLOT)
    plt.close(fig)
    return [HISTOGRAM, BOXPLOT]
