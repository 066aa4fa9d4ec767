"""quality: heuristic filters, CLIP score and a judge (a VLM or the bootstrapped CoCa) over one shard's samples
(see :mod:`ops.quality.shard`)."""

from ops.quality.clip_score import ClipModelSpec, ClipScorer, clip_score_shard, clip_threshold
from ops.quality.heuristics import DATACOMP_BASIC, PRESETS, HeuristicConfig
from ops.quality.judge import JudgeConfig, parse_score
from ops.quality.judge_scores import judge_score_shard, judge_threshold
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
    "judge_score_shard",
    "judge_threshold",
    "parse_score",
    "quality_shard",
]
