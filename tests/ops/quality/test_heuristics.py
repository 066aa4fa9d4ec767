"""Heuristic filters at their boundaries, and the DataComp preset against DataComp's own rule."""

from __future__ import annotations

import pytest

from ops.quality import reasons as R
from ops.quality.config import HeuristicRules
from ops.quality.heuristics import DATACOMP_BASIC, NO_HEURISTICS, PRESETS, HeuristicConfig, heuristic_reason


def datacomp_basic(text: str, lang: str, width: int, height: int) -> bool:
    """DataComp's basic filter as written in mlfoundations/datacomp ``baselines/filters.py``."""
    words, chars = len(text.split()), len(text)
    shorter, longer = min(width, height), max(width, height)
    return lang == "en" and words > 2 and chars > 5 and shorter >= 200 and longer / shorter <= 3.0


CASES = [
    # text, lang, width, height, expected reason
    ("a red bicycle", "en", 200, 200, ""),  # 3 words, 13 chars, exactly 200 px, ratio 1
    ("two words", "en", 640, 480, R.CAPTION_TOO_SHORT),  # 2 words is not > 2
    ("a b c", "en", 640, 480, R.CAPTION_TOO_SHORT),  # 3 words but 5 characters is not > 5
    ("a b cd", "en", 640, 480, ""),  # 3 words, 6 characters
    ("  a   b  ", "en", 640, 480, R.CAPTION_TOO_SHORT),  # 9 characters, but only 2 words
    ("a\tb\nc d", "en", 640, 480, ""),  # any whitespace separates words, as str.split does
    ("a red bicycle", "de", 640, 480, R.LANGUAGE),
    ("a red bicycle", None, 640, 480, R.LANGUAGE),  # no language identified
    ("a red bicycle", "en", 199, 600, R.IMAGE_TOO_SMALL),  # shorter side one pixel short
    ("a red bicycle", "en", 600, 199, R.IMAGE_TOO_SMALL),  # either side can be the shorter one
    ("a red bicycle", "en", 600, 200, ""),  # aspect ratio exactly 3
    ("a red bicycle", "en", 601, 200, R.ASPECT_RATIO),  # just over 3
    ("a red bicycle", "en", 200, 601, R.ASPECT_RATIO),  # tall images too
    ("no", "fr", 10, 10000, R.LANGUAGE),  # several failures: the first in precedence order
    ("no", "en", 10, 10000, R.CAPTION_TOO_SHORT),
]


@pytest.mark.parametrize(("text", "lang", "width", "height", "expected"), CASES)
def test_datacomp_preset_matches_datacomp(text, lang, width, height, expected) -> None:
    reason = heuristic_reason(text, lang, width, height, DATACOMP_BASIC)
    assert reason == expected
    assert (reason == "") == datacomp_basic(text, lang or "", width, height)


def test_missing_image_size_is_undecodable_only_when_size_matters() -> None:
    assert heuristic_reason("a red bicycle", "en", None, 480, DATACOMP_BASIC) == R.UNDECODABLE
    assert heuristic_reason("a red bicycle", "en", 0, 0, DATACOMP_BASIC) == R.UNDECODABLE
    assert heuristic_reason("a red bicycle", "en", None, None, HeuristicConfig(languages=("en",))) == ""


def test_upper_caption_bounds_are_inclusive() -> None:
    cfg = HeuristicConfig(max_words=3, max_chars=12)
    assert heuristic_reason("one two three", "xx", 1, 1, cfg) == R.CAPTION_TOO_LONG  # 13 characters
    assert heuristic_reason("one two thre", "xx", 1, 1, cfg) == ""
    assert heuristic_reason("a b c d", "xx", 1, 1, cfg) == R.CAPTION_TOO_LONG


def test_no_heuristics_keeps_everything() -> None:
    assert heuristic_reason(None, None, None, None, NO_HEURISTICS) == ""
    assert heuristic_reason("", "xx", 1, 100_000, NO_HEURISTICS) == ""  # every rule at 0 is off, the ratio too
    assert PRESETS["datacomp_basic"] is DATACOMP_BASIC


def test_rules_start_from_a_preset_and_each_can_be_set_or_turned_off() -> None:
    assert HeuristicRules().resolve() == DATACOMP_BASIC
    small_images = HeuristicRules(min_side=0).resolve()
    assert heuristic_reason("a red bicycle", "en", 64, 64, small_images) == ""
    assert heuristic_reason("a red bicycle", "de", 64, 64, small_images) == R.LANGUAGE  # the rest of the preset
    assert heuristic_reason("a red bicycle", "en", 640, 100, small_images) == R.ASPECT_RATIO
    no_ratio = HeuristicRules(max_aspect_ratio=0).resolve()
    assert heuristic_reason("a red bicycle", "en", 2000, 200, no_ratio) == ""
    assert HeuristicRules(languages=()).resolve().languages == ()  # an empty list turns the language rule off
    assert HeuristicRules(preset="none", languages=["en", "de"]).resolve() == HeuristicConfig(languages=("en", "de"))
    with pytest.raises(ValueError, match="preset"):
        HeuristicRules(preset="strict")
