"""Guardrails: a stage that keeps nothing, or drops most of what it got, is a result to report loudly.

A 100% drop is rarely the data's fault: a DataComp 200 px rule on a crawl of small images, a CLIP threshold from
another model, a balancing ``t`` meant for a billion samples. So a stage's report is judged against a share, and
the verdict names the reasons that dropped the most and the setting behind each, so the fix is one look away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ops.report import StageReport

# The setting a person would change when a reason drops too much (reasons not listed are data, not settings).
REASON_SETTINGS: dict[str, str] = {
    "language": "quality_settings.heuristics.languages",
    "caption_too_short": "quality_settings.heuristics.min_words / min_chars",
    "caption_too_long": "quality_settings.heuristics.max_words / max_chars",
    "image_too_small": "quality_settings.heuristics.min_side (download_settings.min_image_size at download)",
    "aspect_ratio": "quality_settings.heuristics.max_aspect_ratio",
    "clip_score_low": "quality_settings.clip.threshold / top_fraction",
    "judge_score_low": "quality_settings.judge.threshold",
    "judge_unparseable": "quality_settings.judge.mode / prompt",
    "no_model": "quality_settings.clip.model / registered_model",
    "judge_off": "quality_settings.judge.mode (pairs) / model",
    "no_match": "curation_settings.metadata_uri (the entry list)",
    "balanced_out": "curation_settings.balance.t / tail_fraction",
    "near_duplicate": "dedup_settings.phash_radius / crop_radius / min_similarity",
    "semantic_duplicate": "dedup_settings.semantic_threshold",
    "eval_contamination": "dedup_settings.eval_sets / eval_radius",
    "private_address": "crawl_settings.allow_networks / download_settings.allow_networks",
    "opt_out": "crawl_settings.honour_opt_out",
    "text_too_long": "crawl_settings.max_text_chars",
    "page_image_cap": "crawl_settings.max_images_per_page",
    "timeout": "download_settings.timeout",
    "bad_aspect_ratio": "download_settings.max_aspect_ratio",
    "image_too_large": "download_settings.max_image_area",
}


@dataclass(frozen=True)
class GuardrailConfig:
    """``max_drop_share``: a stage dropping more than this share of a non-empty input is flagged (a warning on
    per-shard stages); ``min_dataset_samples``: a dataset with fewer samples fails its blocking check."""

    max_drop_share: float = 0.95
    min_dataset_samples: int = 1


def drop_verdict(report: StageReport, config: GuardrailConfig, top: int = 3) -> str:
    """Empty when the stage kept enough; otherwise one sentence: the share dropped, the top reasons, their settings."""
    if report.rows_in == 0 or report.rows_dropped <= config.max_drop_share * report.rows_in:
        return ""
    share = report.rows_dropped / report.rows_in
    return (
        f"{report.stage}/{report.shard} dropped {share:.0%} of {report.rows_in} samples "
        f"(over {config.max_drop_share:.0%}): {top_reasons(report.dropped, top)}"
    )


def top_reasons(dropped: Mapping[str, int], top: int = 3) -> str:
    """The reasons that dropped the most, each with the setting behind it."""
    parts = []
    for reason, count in sorted(dropped.items(), key=lambda kv: -kv[1])[:top]:
        setting = REASON_SETTINGS.get(reason)
        parts.append(f"{reason} {count}" + (f" (setting: {setting})" if setting else ""))
    return "; ".join(parts)
