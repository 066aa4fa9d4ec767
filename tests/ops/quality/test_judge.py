"""The judge's strict parser, its prompt, and its verdicts (on answers given as strings)."""

from __future__ import annotations

import numpy as np
import pytest

from ops.quality import reasons as R
from ops.quality.judge import JUDGE_PROMPT, JudgeConfig, ParsedScore, judge_pairs, parse_score, render_prompt


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("The caption matches the image well. score: {9}", ParsedScore(9)),
        ("score: {10}", ParsedScore(10)),
        ("score: {1}\n  ", ParsedScore(1)),  # trailing whitespace is fine
        ("Earlier I said score: {2}, but on reflection score: {7}", ParsedScore(7)),  # the final one counts
        ("score: {0}", ParsedScore(None, "out_of_range")),
        ("score: {11}", ParsedScore(None, "out_of_range")),
        ("score: {100}", ParsedScore(None, "out_of_range")),
        ("score: {-3}", ParsedScore(None, "not_an_integer")),
        ("score: {9.5}", ParsedScore(None, "not_an_integer")),
        ("score: {09}", ParsedScore(None, "not_an_integer")),
        ("score: {nine}", ParsedScore(None, "not_an_integer")),
        ("score: { 9 }", ParsedScore(None, "not_an_integer")),
        ("score: {}", ParsedScore(None, "not_an_integer")),
        ("score: {9}.", ParsedScore(None, "not_at_end")),
        ("score: {9} because it is good", ParsedScore(None, "not_at_end")),
        ("Score: {9}", ParsedScore(None, "missing")),  # the format is exact
        ("score: 9", ParsedScore(None, "missing")),
        ("score {9}", ParsedScore(None, "missing")),
        ("The image shows a dog. 9/10", ParsedScore(None, "missing")),
        ("�\x00}{{score", ParsedScore(None, "missing")),
        ("", ParsedScore(None, "empty")),
        ("   \n", ParsedScore(None, "empty")),
        (None, ParsedScore(None, "empty")),
    ],
)
def test_parse_score_is_strict(answer, expected) -> None:
    assert parse_score(answer) == expected


def test_prompt_quotes_the_caption_once_and_asks_for_the_format() -> None:
    prompt = render_prompt(JUDGE_PROMPT, "  a  dog\non the beach ", 1000)
    assert 'Caption: "a dog on the beach"' in prompt
    assert prompt.rstrip().endswith("score: {N}")
    assert "{caption}" not in prompt
    assert render_prompt("{caption}", "x" * 50, 10) == "x" * 10 + "…"
    assert render_prompt("{caption}", "has {braces} and {caption}", 100) == "has {braces} and {caption}"


def test_config_refuses_a_prompt_without_caption_and_unknown_modes() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        JudgeConfig(prompt="Rate the image.")
    with pytest.raises(ValueError, match="mode"):
        JudgeConfig(mode="vibes")


class ScriptedBackend:
    """Stands in for a VLM whose answers are known, to test what the judge does with them."""

    name = "scripted"
    model_seconds = 0.0

    def __init__(self, answers=(), logits=None) -> None:
        self.answers, self.logits, self.prompts = list(answers), logits, []

    def generate(self, images, prompts, max_new_tokens):
        self.prompts.extend(prompts)
        return [self.answers.pop(0) for _ in prompts]

    def score_logits(self, images, prompts, answer_prefix):
        assert answer_prefix == "score: {"
        return self.logits


def test_verdicts_keep_at_threshold_and_drop_unparseable() -> None:
    backend = ScriptedBackend(["fine. score: {9}", "meh. score: {8}", "score: {12}", "no idea", "great score: {10}"])
    verdicts = judge_pairs(backend, [None] * 5, ["c1", "c2", "c3", "c4", "c5"], JudgeConfig(threshold=9))
    assert [v.reason for v in verdicts] == ["", R.JUDGE_SCORE_LOW, R.JUDGE_UNPARSEABLE, R.JUDGE_UNPARSEABLE, ""]
    assert [v.score for v in verdicts] == [9.0, 8.0, None, None, 10.0]
    assert [v.error for v in verdicts] == ["", "", "out_of_range", "missing", ""]
    assert verdicts[3].answer == "no idea"
    assert 'Caption: "c2"' in backend.prompts[1]


def test_logit_verdict_is_the_expected_score() -> None:
    sure_nine = np.zeros(10)
    sure_nine[8] = 0.9
    split = np.zeros(10)
    split[[7, 9]] = 0.4  # 8 or 10: expectation 9
    low = np.full(10, 0.01)
    backend = ScriptedBackend(logits=np.stack([sure_nine, split, low, np.zeros(10)]))
    verdicts = judge_pairs(backend, [None] * 4, ["a", "b", "c", "d"], JudgeConfig(mode="logits"))
    assert [v.reason for v in verdicts] == ["", "", R.JUDGE_SCORE_LOW, R.NAN_SCORE]
    assert verdicts[0].score == pytest.approx(9.0) and verdicts[0].digit_mass == pytest.approx(0.9)
    assert verdicts[1].score == pytest.approx(9.0)
    assert verdicts[2].score == pytest.approx(5.5)
