"""Metadata filters that need no pixels: language, caption length, shorter image side, aspect ratio.

They read the crawl's language ID, the caption, and the original image size img2dataset recorded before
resizing, so they run before any model and decide most drops for the price of a parquet read. DataComp's basic
filter is the preset ``DATACOMP_BASIC``; its rules, from ``baselines/filters.py`` in mlfoundations/datacomp:
English, more than 2 whitespace-separated words, more than 5 characters, shorter side at least 200 px and
longer/shorter side at most 3. DataComp identifies the language with fastText, the crawl stage here with
py3langid, so the language rule is the same rule on a different detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from ops.quality import reasons as R


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
