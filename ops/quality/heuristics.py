"""The ``heuristics`` stage: metadata filters that need no pixels (language, caption length, shorter image side,
aspect ratio).

They read the crawl's language ID, the caption, and the original image size img2dataset recorded before
resizing, so they decide most drops for the price of a parquet read. They are a stage of their own, before any
model: the CLIP score and the judge then score only the samples these rules kept, and the bootstrap's round 0
(:mod:`ops.bootstrap`) trains on what they and MetaCLIP kept. DataComp's basic
filter is the preset ``DATACOMP_BASIC``; its rules, from ``baselines/filters.py`` in mlfoundations/datacomp:
English, more than 2 whitespace-separated words, more than 5 characters, shorter side at least 200 px and
longer/shorter side at most 3. DataComp identifies the language with fastText, the crawl stage here with
py3langid, so the language rule is the same rule on a different detector.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pyarrow as pa

from infra.lake import Lake
from ops import graph
from ops.quality import reasons as R
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage


@dataclass(frozen=True)
class HeuristicConfig:
    """Each rule is off at 0 (or no languages); bounds are inclusive (``min_words=3`` keeps 3 words)."""

    languages: tuple[str, ...] = ()
    min_words: int = 0
    max_words: int = 0
    min_chars: int = 0
    max_chars: int = 0
    min_side: int = 0
    max_aspect_ratio: float = 0


NO_HEURISTICS = HeuristicConfig()
DATACOMP_BASIC = HeuristicConfig(languages=("en",), min_words=3, min_chars=6, min_side=200, max_aspect_ratio=3.0)
PRESETS: dict[str, HeuristicConfig] = {"none": NO_HEURISTICS, "datacomp_basic": DATACOMP_BASIC}


def heuristic_reason(
    text: str | None,
    lang: str | None,
    width: int | None,
    height: int | None,
    config: HeuristicConfig,
) -> str:
    """The first rule a sample breaks, in :mod:`ops.quality.reasons` order, or ``""`` when it passes."""
    if config.languages and lang not in config.languages:
        return R.LANGUAGE
    caption = text or ""
    words, chars = len(caption.split()), len(caption)
    if words < config.min_words or chars < config.min_chars:
        return R.CAPTION_TOO_SHORT
    if (config.max_words and words > config.max_words) or (config.max_chars and chars > config.max_chars):
        return R.CAPTION_TOO_LONG
    if config.min_side <= 0 and config.max_aspect_ratio <= 0:
        return ""
    if not width or not height or width < 0 or height < 0:
        return R.UNDECODABLE
    shorter, longer = min(width, height), max(width, height)
    if shorter < config.min_side:
        return R.IMAGE_TOO_SMALL
    if config.max_aspect_ratio > 0 and longer / shorter > config.max_aspect_ratio:
        return R.ASPECT_RATIO
    return ""


def heuristics_shard(lake: Lake, shard: str, rules: HeuristicConfig) -> StageReport:
    """Apply ``rules`` to every sample the stage's input kept; publish the table, then the report."""

    def decide(samples: pa.Table) -> Decisions:
        reasons = [
            heuristic_reason(text, lang, width, height, rules)
            for text, lang, width, height in zip(
                samples["text"].to_pylist(),
                samples["lang"].to_pylist(),
                samples["original_width"].to_pylist(),
                samples["original_height"].to_pylist(),
                strict=True,
            )
        ]
        table = pa.table(
            {
                "uid": samples["uid"],
                "kept": pa.array([not r for r in reasons], pa.bool_()),
                "reason": pa.array(reasons, pa.string()),
            }
        )
        return Decisions(table, extra={"heuristics": json.dumps(asdict(rules), default=str)})

    columns = ["text", "lang", "original_width", "original_height"]
    return run_shard_stage(lake, graph.stage("heuristics"), shard, decide, columns=columns)
