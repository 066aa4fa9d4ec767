"""Stable sample identifiers.

A ``uid`` names a (URL, text) pair: the same pair seen in two crawls or two shards gets the same uid, so
decisions keyed by uid (dedup survivors, balancing draws) do not depend on which shard saw it first.
"""

from __future__ import annotations

import hashlib


def pair_uid(url: str, text: str) -> str:
    """32 hex characters (128 bits) of SHA-256 over the URL and text, NUL-separated."""
    return hashlib.sha256(f"{url}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
