"""The dedup stage's drop vocabulary, in precedence order: a sample that qualifies for several carries the first.

A sample that cannot be looked at is dropped before any comparison; eval contamination comes before duplicates
so that a training copy of a benchmark image is never the survivor of its cluster; among duplicates the most
certain relation to the survivor wins.
"""

from __future__ import annotations

MISSING_IMAGE = "missing_image"  # the download ledger kept it, but its tar holds no image for the key
UNDECODABLE = "undecodable"  # image bytes Pillow cannot decode
EVAL_CONTAMINATION = "eval_contamination"  # exact or near copy of an image in a configured evaluation set
DUPLICATE_PAIR = "duplicate_pair"  # the same (URL, text) pair, i.e. the same uid, kept in another shard
EXACT_DUPLICATE = "exact_duplicate"  # the same decoded pixels (or the same uid) as a member of the survivor's group
NEAR_DUPLICATE = "near_duplicate"  # linked to the survivor by pHash matches (full image or crop, checked)
SEMANTIC_DUPLICATE = "semantic_duplicate"  # linked to the survivor only through embedding cosine >= threshold

# The fingerprinting step (``image_hashes``) can only fail to look at an image.
HASH_REASONS: tuple[str, ...] = (MISSING_IMAGE, UNDECODABLE)

REASONS: tuple[str, ...] = (
    MISSING_IMAGE,
    UNDECODABLE,
    EVAL_CONTAMINATION,
    DUPLICATE_PAIR,
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    SEMANTIC_DUPLICATE,
)
