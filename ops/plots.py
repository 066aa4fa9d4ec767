"""Figures people would rather look at than read; plain matplotlib, logged to MLflow by the assets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def histogram(counts: Mapping[int, int], title: str, xlabel: str) -> Figure:
    """Bar chart of ``value -> count`` on a log count axis (cluster sizes, scores bucketed)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    keys = sorted(counts)
    ax.bar([str(k) for k in keys], [counts[k] for k in keys])
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    fig.tight_layout()
    return fig


def ranked_curves(curves: Mapping[str, Sequence[float]], title: str, threshold: float | None = None) -> Figure:
    """Log-log rank plot of per-entry counts, e.g. MetaCLIP entry counts before and after balancing."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        ordered = sorted((v for v in values if v > 0), reverse=True)
        ax.plot(range(1, len(ordered) + 1), ordered, label=label)
    if threshold is not None:
        ax.axhline(threshold, linestyle="--", color="grey", label=f"t = {threshold:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("entry rank")
    ax.set_ylabel("matches")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
