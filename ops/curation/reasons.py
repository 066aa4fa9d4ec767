"""Why curation drops a sample: it matched no metadata entry, or the balancing draw went against it."""

from __future__ import annotations

NO_MATCH = "no_match"
BALANCED_OUT = "balanced_out"

REASONS: tuple[str, ...] = (NO_MATCH, BALANCED_OUT)
