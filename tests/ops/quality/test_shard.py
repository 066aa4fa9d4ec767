"""The quality op end to end on a small shard: ledger, upstream choice, honest defaults, CLIP, a tiny real VLM
judge through the production loader, and resume after an interruption."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.lake import Lake
from ops import graph
from ops.ledger import check_ledger
from ops.quality import reasons as R
from ops.quality.clip_score import ClipModelSpec, ClipScorer, clip_score_shard, clip_threshold
from ops.quality.config import ClipScoreConfig, HeuristicRules, QualityConfig
from ops.quality.judge import JudgeConfig
from ops.quality.shard import SCHEMA, quality_shard
from ops.report import StageReport
from ops.stage import conservation_problems
from ops.vlm import VlmConfig, load_backend
from tests.ops.lakes import Settings, run, words_of
from tests.ops.quality.shards import GERMAN, Sample, many, write_shard, write_shards
from tests.ops.quality.tiny_clip import NAME, build_checkpoint

MIXED = [
    *many(4),
    Sample("german", text=GERMAN),
    Sample("short", text="the cat"),
    Sample("small", width=150, height=400),
    Sample("wide", width=1000, height=300),
    Sample("bad", image="corrupt"),
    Sample("gone", image="missing"),
    Sample("failed", downloaded=False),
]
HEURISTIC_DROPS = {
    "german": R.LANGUAGE,
    "short": R.CAPTION_TOO_SHORT,
    "small": R.IMAGE_TOO_SMALL,
    "wide": R.ASPECT_RATIO,
}
ENTERING = [s.name for s in MIXED if s.downloaded and s.name not in HEURISTIC_DROPS]  # what the heuristics kept
QUALITY = graph.stage("quality")


def read(lake: Lake, shard: str = "s0"):
    table = lake.read_parquet(QUALITY.table(shard))
    report = StageReport.from_dict(lake.read_json(QUALITY.report(shard)))
    return table, report


def reasons(table, uids: dict[str, str]) -> dict[str, str]:
    """name -> reason"""
    names = {uid: name for name, uid in uids.items()}
    return {names[u]: r for u, r in zip(table["uid"].to_pylist(), table["reason"].to_pylist(), strict=True)}


def test_without_models_every_sample_the_heuristics_kept_is_kept_and_balances(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    uids = write_shard(lake, "s0", MIXED)
    heuristics = lake.read_parquet(graph.stage("heuristics").table("s0"))
    assert {n: r for n, r in reasons(heuristics, uids).items() if r} == HEURISTIC_DROPS
    lake.delete("download/s0.tar")  # no model filter, so the pixels are never read
    report = quality_shard(lake, "s0", QualityConfig())
    table, written = read(lake)
    assert table.schema == SCHEMA
    entering = [uids[n] for n in ENTERING]
    assert table["uid"].to_pylist() == entering
    assert check_ledger(table, R.REASONS, written, entering) == []
    assert conservation_problems(lake, QUALITY, "s0") == []
    assert report.to_dict() == written.to_dict()
    assert report.extra["clip_score"] == "no CLIP model configured"
    assert report.extra["judge"] == "no judge configured"
    got = reasons(table, uids)
    assert got["bad"] == got["gone"] == ""  # no model looked at pixels, so nothing is known about them
    assert report.rows_kept == len(entering)
    assert table["clip_score"].null_count == table["judge_score"].null_count == table.num_rows


def test_quality_decides_exactly_what_its_input_kept(tmp_path: Path) -> None:
    """The input is the declaration's: what the heuristics kept, after curation and dedup, whatever tables exist."""
    lake = Lake(str(tmp_path))
    first, second = many(4, "a"), [many(4, "a")[1], Sample("odd", text="zzz qqq xxx"), *many(3, "b")]
    entries = words_of(s.text for s in first + second if s.name != "odd")
    uids = write_shards(lake, {"s0": first, "s1": second}, settings=Settings(entries=entries))
    dedup = lake.read_parquet(graph.stage("dedup").table("s1"))
    curation = lake.read_parquet(graph.stage("curation").table("s1"))
    assert reasons(dedup, uids)["a001"] == "duplicate_pair"  # the same pair, kept in s0
    assert reasons(curation, uids)["odd"] == "no_match"
    report = quality_shard(lake, "s1", QualityConfig())
    table, _ = read(lake, "s1")
    assert table["uid"].to_pylist() == [uids[n] for n in ("b000", "b001", "b002")]
    assert report.rows_in == 3 and report.rows_kept == 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClipScorer, ClipScoreConfig]:
    """The tiny CLIP as a scorer, and the settings that name it (the threshold is set per test)."""
    _, path = build_checkpoint(tmp_path_factory.mktemp("clip"))
    return ClipScorer(ClipModelSpec(model=NAME, pretrained=str(path))), ClipScoreConfig(
        model=NAME, pretrained=str(path), threshold=0.0
    )


def with_clip(clip, **filter) -> QualityConfig:
    _, named = clip
    return QualityConfig(clip=dataclasses.replace(named, **filter))


def test_clip_absolute_threshold(tmp_path: Path, clip) -> None:
    scorer, _ = clip
    lake = Lake(str(tmp_path))
    uids = write_shard(lake, "s0", MIXED)
    clip_score_shard(lake, "s0", scorer)
    quality_shard(lake, "s0", with_clip(clip, threshold=0.0))
    table, report = read(lake)
    assert check_ledger(table, R.REASONS, report, [uids[n] for n in ENTERING]) == []
    scores = dict(zip(table["uid"].to_pylist(), table["clip_score"].to_pylist(), strict=True))
    got = reasons(table, uids)
    assert got["bad"] == got["gone"] == R.UNDECODABLE
    assert "german" not in got  # the heuristics dropped it before any model looked at it
    for name in (s.name for s in many(4)):
        assert got[name] == ("" if scores[uids[name]] >= 0.0 else R.CLIP_SCORE_LOW)
    assert report.extra["clip_model"] == scorer.name and report.extra["clip_threshold"] == 0.0


def test_clip_top_fraction_uses_the_global_threshold(tmp_path: Path, clip) -> None:
    scorer, _ = clip
    lake = Lake(str(tmp_path))
    write_shards(lake, {"s0": many(10, "a"), "s1": many(10, "b")})
    for shard in ("s0", "s1"):
        clip_score_shard(lake, shard, scorer)
    config = with_clip(clip, threshold=None, top_fraction=0.5)
    with pytest.raises(FileNotFoundError, match="clip_threshold"):
        quality_shard(lake, "s0", config)
    global_threshold = clip_threshold(lake, ["s1", "s0"], 0.5)
    kept = 0
    for shard in ("s0", "s1"):
        report = quality_shard(lake, shard, config)
        assert report.extra["clip_threshold"] == global_threshold.threshold
        kept += report.rows_kept
    scores = [s for shard in ("s0", "s1") for s in lake.read_parquet(f"quality/clip/{shard}.parquet")["clip_score"]]
    assert kept == sum(s.as_py() >= global_threshold.threshold for s in scores)
    assert kept == 11  # 20 × 0.5 + the sample at the threshold itself, as DataComp keeps it
    with pytest.raises(ValueError, match="exactly one"):
        with_clip(clip, threshold=None)


def test_scores_of_another_set_of_samples_are_refused(tmp_path: Path, clip) -> None:
    """Curation, and so what the heuristics kept, changed after the scores were written: quality names the step to
    re-run instead of deciding part of the pool with old scores."""
    scorer, _ = clip
    lake = Lake(str(tmp_path))
    samples = [*many(3), Sample("odd", text="the quick brown fox jumps over the lazy dog")]
    write_shard(lake, "s0", samples)
    clip_score_shard(lake, "s0", scorer)
    quality_shard(lake, "s0", with_clip(clip))
    run(lake, ["s0"], "heuristics", Settings(entries=words_of(s.text for s in many(3))), start="metaclip_metadata")
    with pytest.raises(ValueError, match="stale"):
        quality_shard(lake, "s0", with_clip(clip))


def test_no_model_to_score_with_yet_is_recorded_not_invented(tmp_path: Path, clip) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", many(3))
    clip_score_shard(lake, "s0", None)  # settings name a model that is not available yet (none registered)
    report = quality_shard(lake, "s0", with_clip(clip))
    table, _ = read(lake)
    assert report.extra["clip_score"] == "no CLIP model to score with yet (see clip_scores)"
    assert report.rows_kept == 3 and table["clip_score"].null_count == 3


@pytest.fixture(scope="module")
def qwen_judge(tiny_qwen2_vl: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_backend(VlmConfig(model=str(tiny_qwen2_vl), name="tiny-qwen2-vl"))


def test_tiny_qwen_judge_runs_and_is_parsed_honestly(tmp_path: Path, qwen_judge) -> None:
    lake = Lake(str(tmp_path))
    uids = write_shard(lake, "s0", MIXED)
    report = quality_shard(
        lake, "s0", QualityConfig(judge=JudgeConfig(max_new_tokens=8, batch_size=3)), judge=qwen_judge
    )
    table, written = read(lake)
    assert check_ledger(table, R.REASONS, written, [uids[n] for n in ENTERING]) == []
    got = reasons(table, uids)
    judged = [s.name for s in many(4)]
    assert got["bad"] == got["gone"] == R.UNDECODABLE
    # a random model writes gibberish: every judged pair is dropped as unparseable, with its answer kept
    assert all(got[n] == R.JUDGE_UNPARSEABLE for n in judged)
    rows = {r["uid"]: r for r in table.to_pylist()}
    assert all(rows[uids[n]]["judge_answer"] is not None and rows[uids[n]]["judge_error"] for n in judged)
    assert report.dropped[R.JUDGE_UNPARSEABLE] == 4
    assert report.extra["judge"] == "tiny-qwen2-vl" and report.extra["model_seconds"] > 0
    assert uids["german"] not in rows  # dropped by a heuristic, never shown to the judge


def test_logit_judge_scores_every_pair(tmp_path: Path, qwen_judge) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", many(5))
    config = QualityConfig(judge=JudgeConfig(mode="logits", threshold=1))
    report = quality_shard(lake, "s0", config, judge=qwen_judge)
    table, _ = read(lake)
    assert report.rows_kept == 5  # every expected score is >= 1
    assert all(1 <= s <= 10 for s in table["judge_score"].to_pylist())
    assert all(0 < m <= 1 for m in table["judge_digit_mass"].to_pylist())


class Interrupted(RuntimeError):
    pass


class DiesAfter:
    """A backend that passes ``calls`` batches to the real one, then dies like a preempted pod."""

    def __init__(self, backend, calls: int) -> None:
        self.backend, self.calls = backend, calls
        self.name = backend.name
        self.model_seconds = 0.0
        self.batches = 0

    def generate(self, images, prompts, max_new_tokens):
        if self.batches >= self.calls:
            raise Interrupted("killed")
        self.batches += 1
        return self.backend.generate(images, prompts, max_new_tokens)


def test_resume_after_interruption_gives_the_same_table(tmp_path: Path, qwen_judge) -> None:
    samples = [*many(9), Sample("bad", image="corrupt")]
    config = QualityConfig(heuristics=HeuristicRules(), judge=JudgeConfig(max_new_tokens=6, batch_size=3))
    whole = Lake(str(tmp_path / "whole"))
    write_shard(whole, "s0", samples)
    quality_shard(whole, "s0", config, judge=qwen_judge)

    lake = Lake(str(tmp_path / "resumed"))
    write_shard(lake, "s0", samples)
    first = DiesAfter(qwen_judge, calls=2)
    with pytest.raises(Interrupted):
        quality_shard(lake, "s0", config, judge=first)
    assert not lake.exists(QUALITY.table("s0")) and not lake.exists(QUALITY.report("s0"))
    assert lake.exists("quality/judge/.staging/s0/part-000001.parquet")
    second = DiesAfter(qwen_judge, calls=99)
    quality_shard(lake, "s0", config, judge=second)
    # 10 samples in batches of 3: two before the kill, one after; the last holds only the undecodable image,
    # which never reaches the model
    assert second.batches == 1
    assert read(lake)[0].equals(read(whole)[0])
    assert lake.list("quality") == ["quality/s0.parquet", "quality/s0.report.json"]
    assert not lake.exists("quality/judge/.staging/s0/fingerprint.json")


def test_a_changed_config_does_not_reuse_saved_batches(tmp_path: Path, qwen_judge) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", many(6))
    with pytest.raises(Interrupted):
        quality_shard(lake, "s0", QualityConfig(judge=JudgeConfig(batch_size=3)), judge=DiesAfter(qwen_judge, 1))
    again = DiesAfter(qwen_judge, 99)
    quality_shard(lake, "s0", QualityConfig(judge=JudgeConfig(batch_size=3, max_new_tokens=4)), judge=again)
    assert again.batches == 2


def test_a_shard_where_nothing_entered(tmp_path: Path, clip, qwen_judge) -> None:
    scorer, _ = clip
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", [Sample("failed", downloaded=False)])
    clip_score_shard(lake, "s0", scorer)
    report = quality_shard(lake, "s0", with_clip(clip, threshold=0.2), judge=qwen_judge)
    table, _ = read(lake)
    assert table.num_rows == report.rows_in == 0 and table.schema == SCHEMA
    assert lake.list("quality") == [
        "quality/clip/s0.parquet",
        "quality/clip/s0.report.json",
        "quality/s0.parquet",
        "quality/s0.report.json",
    ]
