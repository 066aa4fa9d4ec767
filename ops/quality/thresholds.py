"""Top-fraction thresholds over all shards, as DataComp computes them for the CLIP score.

Scores are written per shard before any threshold, and the threshold is computed once over every shard's
finite scores: sort descending, take the value at ``int(n × fraction)``, keep scores at or above it (ties at the
threshold are all kept). Sorting makes it independent of shard order and of how samples spread over shards.
"""

from __future__ import annotations

import numpy as np


def top_fraction_threshold(values: np.ndarray, fraction: float, what: str = "score") -> float:
    """The value that keeps the top ``fraction`` of ``values`` (finite values only)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {fraction}")
    values = np.asarray(values, dtype=np.float64)
    ranked = np.sort(values[np.isfinite(values)])[::-1]
    if not len(ranked):
        raise ValueError(f"no finite {what} in any shard: cannot compute a top-fraction threshold")
    return float(ranked[min(int(len(ranked) * fraction), len(ranked) - 1)])
