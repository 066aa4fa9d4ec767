"""MetaCLIP curation: metadata, substring matching, global entry counts and balancing (see ANCHORS.md)."""

from ops.curation.balancing import p_keep, threshold_for_tail_fraction
from ops.curation.config import BalanceConfig, CurationConfig
from ops.curation.matching import Matcher, match_reference, spacing
from ops.curation.metadata import MetadataConfig, build_metadata, load_metadata, save_metadata
from ops.curation.stage import count_entries, match_shard

__all__ = [
    "BalanceConfig",
    "CurationConfig",
    "Matcher",
    "MetadataConfig",
    "build_metadata",
    "count_entries",
    "load_metadata",
    "match_reference",
    "match_shard",
    "p_keep",
    "save_metadata",
    "spacing",
    "threshold_for_tail_fraction",
]
