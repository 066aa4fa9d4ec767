"""quality: heuristic filters, CLIP score and VLM judge over one shard's samples (see :mod:`ops.quality.shard`)."""

from ops.quality.clip_score import ClipModelSpec, ClipScorer, clip_score_shard, clip_threshold
from ops.quality.heuristics import DATACOMP_BASIC, PRESETS, HeuristicConfig
from ops.quality.judge import JudgeConfig, parse_score
from ops.quality.reasons import REASONS
from ops.quality.shard import QualityConfig, quality_shard

__all__ = [
    "DATACOMP_BASIC",
    "PRESETS",
    "REASONS",
    "ClipModelSpec",
    "ClipScorer",
    "HeuristicConfig",
    "JudgeConfig",
    "QualityConfig",
    "clip_score_shard",
    "clip_threshold",
    "parse_score",
    "quality_shard",
]
