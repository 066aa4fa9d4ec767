"""The fixed vocabularies of the heuristics and quality stages, in precedence order: a sample failing several checks
carries the first one. Cheap metadata checks come first (their own stage), then the CLIP score, then the VLM
judge, which only ever sees the samples every earlier check kept (it is by far the most expensive)."""

from __future__ import annotations

LANGUAGE = "language"
CAPTION_TOO_SHORT = "caption_too_short"
CAPTION_TOO_LONG = "caption_too_long"
IMAGE_TOO_SMALL = "image_too_small"
ASPECT_RATIO = "aspect_ratio"
UNDECODABLE = "undecodable"  # no readable image (or image size) for the sample
NAN_SCORE = "nan_score"  # a model returned a score that is not a number
NO_MODEL = "no_model"  # no CLIP model to score with (none configured, or none registered yet)
JUDGE_OFF = "judge_off"  # the judge is not a pair judge (mode ``pairs``) in this profile: nothing to score with
CLIP_SCORE_LOW = "clip_score_low"
JUDGE_UNPARSEABLE = "judge_unparseable"  # the judge's answer does not end in a valid ``score: {N}``
JUDGE_SCORE_LOW = "judge_score_low"
JUDGE_SIMILARITY_LOW = "judge_similarity_low"  # a pair judge's image-caption similarity is below its global threshold
JUDGE_LIKELIHOOD_LOW = "judge_likelihood_low"  # the caption is unlikely under the pair judge's captioner

HEURISTIC_REASONS = (LANGUAGE, CAPTION_TOO_SHORT, CAPTION_TOO_LONG, IMAGE_TOO_SMALL, ASPECT_RATIO, UNDECODABLE)
REASONS: tuple[str, ...] = (
    UNDECODABLE,
    NAN_SCORE,
    CLIP_SCORE_LOW,
    JUDGE_UNPARSEABLE,
    JUDGE_SCORE_LOW,
    JUDGE_SIMILARITY_LOW,
    JUDGE_LIKELIHOOD_LOW,
)
CLIP_SCORE_REASONS: tuple[str, ...] = (UNDECODABLE, NAN_SCORE, NO_MODEL)
JUDGE_SCORE_REASONS: tuple[str, ...] = (UNDECODABLE, NAN_SCORE, JUDGE_OFF)
