"""The VLM judge: a compact VLM rates each (image, caption) pair from 1 to 10, as in "Trust the Model".

Two ways to get the score, same prompt:

- ``generate``: the judge writes a short rationale ending in ``score: {N}``; :func:`parse_score` accepts only an
  answer that ends in exactly that form with an integer in range, and everything else is dropped as
  ``judge_unparseable`` with the parser's error kept beside it, so a judge that drifts off format shows up as a
  count instead of being read generously.
- ``logits``: the prompt is followed by the answer prefix ``score: {`` and one forward pass reads the
  probabilities of the digit tokens; the score is their expectation over 1..10. Deterministic and cheaper
  (no rationale is generated); ``judge_digit_mass`` records how much probability the digits got at all.

Pairs scoring at least ``threshold`` (9 by default, the paper's choice, which kept about 18% of its pool) are kept.

A third mode, ``pairs``, is for a judge that needs no prompt: the bootstrapped CoCa scores each pair itself
(contrastive similarity and caption likelihood), and the thresholds are top fractions over all shards
(:mod:`ops.quality.judge_scores`), set by ``similarity_top_fraction`` and ``likelihood_top_fraction``; like the
CLIP threshold, they follow the pool only when the share they keep drifts more than ``tolerance``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ops.quality import reasons as R
from ops.vlm.backend import PairScorer, VlmBackend

JUDGE_PROMPT = (
    "You check image-text pairs for a dataset that trains vision-language models.\n"
    'Caption: "{caption}"\n'
    "Rate from 1 to 10 how accurately and specifically the caption describes the image. Give at most 3 if the "
    "image is unsafe, blank, mostly text or of very poor quality, or if the caption names things that are not in "
    "the image. The score is the lowest of these criteria. Explain in one sentence, then end your answer with "
    "the score written exactly as score: {N}"
)
ANSWER_PREFIX = "score: {"
PAIRS = "pairs"
MODES = ("generate", "logits", PAIRS)
SCORE_RANGE = (1, 10)

_FINAL_SCORE = re.compile(r"score: \{([^{}]*)\}\s*\Z")
_ANY_SCORE = re.compile(r"score: \{[^{}]*\}")
_INTEGER = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class JudgeConfig:
    """The judge's model (a VLM checkpoint folder or hub id, run by ``backend``; none: no judge), its prompt and
    how its answer is read; pairs scoring at least ``threshold`` are kept."""

    model: str | None = None
    backend: str = "hf"
    threshold: float = 9
    mode: str = "generate"
    prompt: str = JUDGE_PROMPT
    max_new_tokens: int = 96
    max_caption_chars: int = 1000
    batch_size: int = 8
    similarity_top_fraction: float | None = None  # pairs mode: keep this top share of the pool by similarity
    likelihood_top_fraction: float | None = None  # pairs mode: ... and by caption likelihood
    tolerance: float = 0.01  # pairs mode: a threshold follows the pool only when its kept share drifts this far

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"judge mode must be one of {MODES}, got {self.mode!r}")
        if "{caption}" not in self.prompt:
            raise ValueError("the judge prompt must contain the {caption} placeholder")
        fractions = (self.similarity_top_fraction, self.likelihood_top_fraction)
        if self.mode == PAIRS and fractions == (None, None):
            raise ValueError("judge mode 'pairs' needs similarity_top_fraction, likelihood_top_fraction or both")
        if any(f is not None and not 0.0 < f <= 1.0 for f in fractions):
            raise ValueError(f"top fractions must be in (0, 1], got {fractions}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be at least 0, got {self.tolerance}")


def check_judge(backend: object, config: JudgeConfig) -> None:
    """Refuse a backend that cannot judge in the configured mode, before any work is done."""
    scores_pairs = isinstance(backend, PairScorer)
    if config.mode == PAIRS and not scores_pairs:
        raise ValueError(f"judge mode 'pairs' needs a pair scorer (backend 'coca'); {backend.name} is a prompted VLM")
    if config.mode != PAIRS and scores_pairs:
        raise ValueError(f"{backend.name} follows no prompt: it can judge only in mode 'pairs', not {config.mode!r}")


@dataclass(frozen=True)
class ParsedScore:
    """A parsed judge answer: ``score`` is None exactly when ``error`` says why."""

    score: int | None
    error: str = ""


def parse_score(answer: str | None, low: int = SCORE_RANGE[0], high: int = SCORE_RANGE[1]) -> ParsedScore:
    """Read the score from an answer that must end in ``score: {N}`` (trailing whitespace allowed).

    Errors: ``empty``; ``missing`` (no ``score: {…}`` at all); ``not_at_end`` (text follows the last one);
    ``not_an_integer`` (``{9.5}``, ``{nine}``, ``{09}``, ``{-3}``); ``out_of_range``.
    """
    if answer is None or not answer.strip():
        return ParsedScore(None, "empty")
    match = _FINAL_SCORE.search(answer)
    if match is None:
        return ParsedScore(None, "not_at_end" if _ANY_SCORE.search(answer) else "missing")
    body = match.group(1)
    if not _INTEGER.fullmatch(body):
        return ParsedScore(None, "not_an_integer")
    value = int(body)
    if not low <= value <= high:
        return ParsedScore(None, "out_of_range")
    return ParsedScore(value)


def render_prompt(template: str, caption: str | None, max_chars: int) -> str:
    """The prompt for one caption: whitespace collapsed and length capped, so one caption cannot flood it."""
    text = " ".join((caption or "").split())
    if len(text) > max_chars:
        text = text[:max_chars].rstrip() + "…"
    return template.replace("{caption}", text)


@dataclass(frozen=True)
class Verdict:
    """The judge's outcome for one pair: score, raw answer, parser error, digit mass, and the drop reason."""

    score: float | None
    answer: str | None
    error: str
    digit_mass: float | None
    reason: str


def judge_pairs(
    backend: VlmBackend, images: Sequence[Image.Image], captions: Sequence[str | None], config: JudgeConfig
) -> list[Verdict]:
    """One verdict per decodable (image, caption) pair, in input order."""
    prompts = [render_prompt(config.prompt, c, config.max_caption_chars) for c in captions]
    if not prompts:
        return []
    if config.mode == "logits":
        return [_logit_verdict(row, config.threshold) for row in backend.score_logits(images, prompts, ANSWER_PREFIX)]
    verdicts = []
    for answer in backend.generate(images, prompts, config.max_new_tokens):
        parsed = parse_score(answer)
        if parsed.score is None:
            verdicts.append(Verdict(None, answer, parsed.error, None, R.JUDGE_UNPARSEABLE))
        else:
            low = parsed.score < config.threshold
            verdicts.append(Verdict(float(parsed.score), answer, "", None, R.JUDGE_SCORE_LOW if low else ""))
    return verdicts


def _logit_verdict(probs: np.ndarray, threshold: float) -> Verdict:
    mass = float(np.sum(probs))
    expected = float(np.dot(probs, np.arange(1, 11)) / mass) if mass > 0 else math.nan
    if not math.isfinite(expected):
        return Verdict(None, None, "", mass if math.isfinite(mass) else None, R.NAN_SCORE)
    return Verdict(expected, None, "", mass, R.JUDGE_SCORE_LOW if expected < threshold else "")
