"""Why curation drops a sample: it matched no metadata entry; or (decided when the dataset is written, over the
entry counts of all shards) the balancing draw went against it."""

from __future__ import annotations

NO_MATCH = "no_match"
BALANCED_OUT = "balanced_out"

REASONS: tuple[str, ...] = (NO_MATCH,)
