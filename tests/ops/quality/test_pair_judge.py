"""The pair judge (mode ``pairs``) with the session's tiny CoCa, loaded from the MLflow registry by the production
loader: per-shard scores, global top-fraction thresholds, every sample accounted for with the model version that
judged it, and resume after an interruption."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from infra.lake import Lake
from ops import graph
from ops.ledger import check_ledger
from ops.quality import reasons as R
from ops.quality.config import HeuristicRules, QualityConfig
from ops.quality.judge import JudgeConfig
from ops.quality.judge_scores import SCHEMA, THRESHOLD_PATH, judge_score_shard, judge_threshold, read_judge_threshold
from ops.quality.shard import quality_shard
from ops.report import StageReport
from ops.stage import conservation_problems, done_shards
from ops.vlm import VlmConfig, load_backend
from tests.ops.quality.shards import GERMAN, Sample, many, stored_images, write_shard, write_shards

MIXED = [
    *many(6),
    Sample("german", text=GERMAN),
    Sample("bad", image="corrupt"),
    Sample("gone", image="missing"),
    Sample("failed", downloaded=False),
]
ENTERING = [s.name for s in MIXED if s.downloaded and s.name != "german"]  # the heuristics drop the German one
PAIRS = JudgeConfig(mode="pairs", similarity_top_fraction=0.6, likelihood_top_fraction=0.6, batch_size=3)
QUALITY = graph.stage("quality")
SCORES = graph.stage("judge_scores")


def by_name(table: pa.Table, uids: dict[str, str]) -> dict[str, dict]:
    names = {uid: name for name, uid in uids.items()}
    return {names[row["uid"]]: row for row in table.to_pylist()}


@pytest.fixture(scope="module")
def coca(coca_registry):
    tracker, _ = coca_registry
    engine = {"tracking_uri": tracker.tracking_uri}
    return load_backend(VlmConfig(model="models:/clipfoundry-coca/latest", backend="coca", engine_kwargs=engine))


def test_the_judge_is_named_by_its_registered_version(coca, coca_registry) -> None:
    _, version = coca_registry
    assert coca.name.endswith(f"@models:/clipfoundry-coca/{version}")


def test_every_entering_sample_is_scored(tmp_path: Path, coca) -> None:
    lake = Lake(str(tmp_path))
    uids = write_shard(lake, "s0", MIXED)
    report = judge_score_shard(lake, "s0", coca, batch_size=3)
    table = lake.read_parquet(SCORES.table("s0"))
    entering_uids = [uids[n] for n in ENTERING]
    assert table.schema == SCHEMA and table["uid"].to_pylist() == entering_uids
    assert check_ledger(table, R.JUDGE_SCORE_REASONS, report, entering_uids) == []
    assert dict(report.dropped) == {R.UNDECODABLE: 2} and report.extra["model"] == coca.name
    rows = by_name(table, uids)
    assert np.isnan(rows["bad"]["judge_similarity"]) and np.isnan(rows["gone"]["judge_likelihood"])
    good = [uids[s.name] for s in many(6)]
    direct = coca.score_pairs(stored_images(lake, "quality", "s0", good), [s.text for s in many(6)])
    got = np.array([[rows[s.name]["judge_similarity"], rows[s.name]["judge_likelihood"]] for s in many(6)])
    np.testing.assert_allclose(got, np.stack([direct.similarity, direct.likelihood], 1), atol=1e-4)
    assert not lake.exists(f"{SCORES.home}/.staging/s0/fingerprint.json")


def _scores(lake: Lake, shard: str, similarity: list[float], likelihood: list[float], model: str = "m") -> None:
    n = len(similarity)
    table = pa.table(
        {
            "uid": [f"{shard}-{i}" for i in range(n)],
            "judge_similarity": similarity,
            "judge_likelihood": likelihood,
            "kept": [True] * n,
            "reason": [""] * n,
        },
        schema=SCHEMA,
    )
    lake.write_parquet(SCORES.table(shard), table)
    lake.write_json(SCORES.report(shard), {"extra": {"model": model}})


def test_thresholds_are_top_fractions_over_all_shards_in_any_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    similarity, likelihood = rng.normal(0.2, 0.1, 500), rng.normal(-3, 1, 500)
    one, two = Lake(str(tmp_path / "one")), Lake(str(tmp_path / "two"))
    _scores(one, "a", similarity[:120].tolist(), likelihood[:120].tolist())
    _scores(one, "b", similarity[120:].tolist(), likelihood[120:].tolist())
    order = rng.permutation(500)
    _scores(two, "x", similarity[order[:300]].tolist(), likelihood[order[:300]].tolist())
    _scores(two, "y", similarity[order[300:]].tolist(), likelihood[order[300:]].tolist())
    found = judge_threshold(one, ["b", "a"], 0.3, 0.5)
    unnamed = {"digests": {}, "affected_shards": []}
    assert replace(found, **unnamed) == replace(judge_threshold(two, ["x", "y"], 0.3, 0.5), **unnamed)
    assert sorted(found.digests) == ["a", "b"]
    assert found.similarity == pytest.approx(-np.sort(-similarity)[150], abs=1e-6)
    assert found.likelihood == pytest.approx(-np.sort(-likelihood)[250], abs=1e-6)
    assert (found.scores, found.shards, found.model) == (500, 2, "m")
    assert read_judge_threshold(one, "m", 0.3, 0.5) == found
    with pytest.raises(ValueError, match="not"):
        read_judge_threshold(one, "m", 0.3, None)
    only = judge_threshold(one, ["a", "b"], None, 0.5)
    assert only.similarity is None and only.reason(-9.0, only.likelihood) == ""
    assert only.reason(0.0, only.likelihood - 1) == R.JUDGE_LIKELIHOOD_LOW
    assert only.reason(float("nan"), 0.0) == R.NAN_SCORE


def test_thresholds_refuse_mixed_models_empty_pools_and_no_fraction(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    _scores(lake, "a", [0.1], [-1.0], model="m1")
    _scores(lake, "b", [0.2], [-2.0], model="m2")
    with pytest.raises(ValueError, match="different models"):
        judge_threshold(lake, ["a", "b"], 0.5, None)
    _scores(lake, "c", [], [], model="m1")
    with pytest.raises(ValueError, match="no finite"):
        judge_threshold(lake, ["c"], 0.5, None)
    with pytest.raises(ValueError, match="needs"):
        JudgeConfig(mode="pairs")
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        JudgeConfig(mode="pairs", similarity_top_fraction=1.5)


def _two_shards(root: Path) -> tuple[Lake, dict[str, str]]:
    lake = Lake(str(root))
    return lake, write_shards(lake, {"s0": MIXED, "s1": many(8, prefix="v")})


def test_quality_keeps_what_reaches_every_threshold_and_records_who_judged(tmp_path: Path, coca) -> None:
    lake, uids = _two_shards(tmp_path)
    config = QualityConfig(judge=PAIRS)
    with pytest.raises(FileNotFoundError, match="judge_score_threshold"):
        quality_shard(lake, "s0", config, judge=coca)
    for shard in ("s0", "s1"):
        judge_score_shard(lake, shard, coca)
    thresholds = judge_threshold(lake, ["s0", "s1"], 0.6, 0.6)
    report = quality_shard(lake, "s0", config, judge=coca)
    table = lake.read_parquet(QUALITY.table("s0"))
    written = StageReport.from_dict(lake.read_json(QUALITY.report("s0")))
    assert check_ledger(table, R.REASONS, written, [uids[n] for n in ENTERING]) == []
    assert conservation_problems(lake, QUALITY, "s0") == []
    rows = by_name(table, uids)
    assert "german" not in rows  # the heuristics dropped it: never judged
    assert rows["bad"]["reason"] == rows["gone"]["reason"] == R.UNDECODABLE
    for sample in many(6):
        row = rows[sample.name]
        assert row["judge_model"] == coca.name
        expected = thresholds.reason(row["judge_similarity"], row["judge_likelihood"])
        assert row["reason"] == expected and row["kept"] == (expected == "")
    assert {rows[s.name]["reason"] for s in many(6)} > {""}  # the judge dropped some, kept some
    assert report.extra["judge"] == coca.name and report.extra["judge_mode"] == "pairs"
    assert report.extra["judge_similarity_threshold"] == thresholds.similarity
    assert lake.exists(THRESHOLD_PATH)
    judge_threshold(lake, ["s1"], 0.6, 0.6)  # computed without s0's scores
    with pytest.raises(ValueError, match="re-run judge_score_threshold"):
        quality_shard(lake, "s0", config, judge=coca)
    lake.delete(SCORES.report("s0"))
    with pytest.raises(ValueError, match="run judge_scores for it"):
        quality_shard(lake, "s0", config, judge=coca)


def test_backends_and_modes_that_do_not_fit_are_refused(tmp_path: Path, coca) -> None:
    lake, _ = _two_shards(tmp_path)

    class PromptedVlm:
        name = "a-vlm"
        model_seconds = 0.0

        def generate(self, images, prompts, max_new_tokens):
            return ["score: {9}"] * len(prompts)

    with pytest.raises(ValueError, match="pair scorer"):
        quality_shard(lake, "s0", QualityConfig(judge=PAIRS), judge=PromptedVlm())
    with pytest.raises(ValueError, match="only in mode 'pairs'"):
        quality_shard(lake, "s0", QualityConfig(judge=JudgeConfig(mode="logits")), judge=coca)
    assert not lake.exists(QUALITY.table("s0"))


class Interrupted(RuntimeError):
    pass


class DiesAfter:
    """Passes ``calls`` batches to the real scorer, then dies like a preempted pod."""

    def __init__(self, scorer, calls: int) -> None:
        self.scorer, self.calls, self.batches = scorer, calls, 0
        self.name, self.model_seconds = scorer.name, 0.0

    def score_pairs(self, images, captions):
        if self.batches >= self.calls:
            raise Interrupted("killed")
        self.batches += 1
        return self.scorer.score_pairs(images, captions)


def test_resume_after_interruption_gives_the_same_tables(tmp_path: Path, coca) -> None:
    config = QualityConfig(heuristics=HeuristicRules(preset="none"), judge=PAIRS)
    whole, _ = _two_shards(tmp_path / "whole")
    for shard in ("s0", "s1"):
        judge_score_shard(whole, shard, coca, batch_size=3)
    judge_threshold(whole, ["s0", "s1"], 0.6, 0.6)
    quality_shard(whole, "s0", config, judge=coca)

    lake, _ = _two_shards(tmp_path / "resumed")
    judge_score_shard(lake, "s1", coca, batch_size=3)
    with pytest.raises(Interrupted):
        judge_score_shard(lake, "s0", DiesAfter(coca, 1), batch_size=3)
    assert lake.exists(f"{SCORES.home}/.staging/s0/part-000000.parquet")
    second = DiesAfter(coca, 99)
    judge_score_shard(lake, "s0", second, batch_size=3)
    # 8 entering samples in batches of 3: one saved before the kill; of the two after, the last holds only the
    # two undecodable images, so only one more batch reaches the model
    assert second.batches == 1
    for shard in ("s0", "s1"):  # pandas compares NaN (undecodable) as equal, Arrow does not
        got, expected = (x.read_parquet(SCORES.table(shard)).to_pandas() for x in (lake, whole))
        assert got.equals(expected)
    judge_threshold(lake, ["s0", "s1"], 0.6, 0.6)
    quality_shard(lake, "s0", config, judge=coca)
    got, expected = (x.read_parquet(QUALITY.table("s0")).to_pandas() for x in (lake, whole))
    assert got.equals(expected)
    published = [f"{SCORES.home}/{s}.{ext}" for s in ("s0", "s1") for ext in ("parquet", "report.json")]
    assert lake.list(SCORES.home) == published


def test_thresholds_name_the_shards_whose_decisions_they_may_change(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    _scores(lake, "a", [0.1, 0.2, 0.3, 0.4], [0.0] * 4)
    _scores(lake, "b", [0.5, 0.6, 0.7, 0.8], [0.0] * 4)
    first = judge_threshold(lake, ["a", "b"], 0.5, None, tolerance=0.3)
    assert first.similarity == pytest.approx(0.4) and first.affected_shards == ["a", "b"]
    assert judge_threshold(lake, ["a", "b"], 0.5, None, tolerance=0.3).affected_shards == []
    _scores(lake, "c", [0.9, 1.0, 1.1, 1.2], [0.0] * 4)
    # the exact value is now 0.6, but 0.4 still keeps 9 of 12, within 0.3 of one half: only the new shard changes
    held = judge_threshold(lake, ["a", "b", "c"], 0.5, None, tolerance=0.3)
    assert held.similarity == first.similarity and held.affected_shards == ["c"]
    # without the tolerance the threshold moves to 0.6: a and b hold scores that now fall below it, c does not
    moved = judge_threshold(lake, ["a", "b", "c"], 0.5, None)
    assert moved.similarity == pytest.approx(0.6, abs=1e-6) and moved.affected_shards == ["a", "b"]
    _scores(lake, "c", [0.9, 1.0, 1.1, 1.3], [0.0] * 4)
    assert judge_threshold(lake, ["a", "b", "c"], 0.5, None).affected_shards == ["c"]
    assert judge_threshold(lake, ["a", "b", "c"], 0.5, 0.5).affected_shards == ["a", "b", "c"]  # other fractions
    off = judge_threshold(lake, ["a", "b", "c"], None, None)
    assert off.affected_shards == ["a", "b", "c"] and off.model == ""  # the thresholds in force are gone
    assert judge_threshold(lake, ["a", "b", "c"], None, None).affected_shards == []
    _scores(lake, "d", [0.5], [0.0], model="m2")
    with pytest.raises(ValueError, match=r"re-run judge_scores for \['d'\]"):
        judge_threshold(lake, ["a", "b", "c", "d"], 0.5, None)


def test_judge_off_scores_nothing_and_accounts_for_every_sample(tmp_path: Path) -> None:
    lake, uids = _two_shards(tmp_path)
    for shard in ("s0", "s1"):
        report = judge_score_shard(lake, shard, None)
        assert conservation_problems(lake, SCORES, shard) == []
        assert report.rows_kept == 0 and set(report.dropped) == {R.JUDGE_OFF}
    table = lake.read_parquet(SCORES.table("s0"))
    assert table.schema == SCHEMA and table["uid"].to_pylist() == [uids[n] for n in ENTERING]
    assert table["judge_similarity"].null_count == table.num_rows
    assert not lake.exists(f"{SCORES.home}/.staging")
    off = judge_threshold(lake, ["s0", "s1"], None, None)
    assert (off.similarity, off.likelihood, off.affected_shards) == (None, None, ["s0", "s1"])
    assert "pairs" in off.note and lake.read_json(graph.stage("judge_score_threshold").output) == asdict(off)
    assert judge_threshold(lake, ["s0", "s1"], None, None).affected_shards == []
    with pytest.raises(ValueError, match="no pair judge scored"):
        judge_threshold(lake, ["s0", "s1"], 0.5, None)
    quality_shard(lake, "s0", QualityConfig())  # without a judge, quality reads neither
    assert conservation_problems(lake, QUALITY, "s0") == []


def test_judge_scores_then_threshold_then_quality_through_the_declared_stages(tmp_path: Path, coca) -> None:
    lake, uids = _two_shards(tmp_path)
    config = QualityConfig(judge=PAIRS)
    assert [s.name for s in graph.stages().values() if s.name in QUALITY.reads] == [
        "clip_scores",
        "clip_score_threshold",
        "judge_scores",
        "judge_score_threshold",
    ]
    assert SCORES.takes == QUALITY.takes and SCORES.annotates
    for shard in ("s0", "s1"):
        judge_score_shard(lake, shard, coca, batch_size=4)
        assert conservation_problems(lake, SCORES, shard) == []
    step = graph.stage("judge_score_threshold")
    assert step.reads == ("judge_scores",) and step.output == THRESHOLD_PATH
    scored = done_shards(lake, SCORES, ["s0", "s1", "never-ingested"])
    first = judge_threshold(lake, scored, 0.6, 0.6, tolerance=PAIRS.tolerance)
    assert first.affected_shards == ["s0", "s1"] and first.model == coca.name
    for shard in first.affected_shards:
        quality_shard(lake, shard, config, judge=coca)
        assert conservation_problems(lake, QUALITY, shard) == []
    rows = by_name(lake.read_parquet(QUALITY.table("s1")), uids)
    assert all(row["judge_model"] == coca.name for row in rows.values())
    kept = sum(row["kept"] for row in rows.values())
    assert 0 < kept < len(rows)
    judge_score_shard(lake, "s1", coca, batch_size=4)  # the same scores again: nothing for quality to redo
    again = judge_threshold(lake, scored, 0.6, 0.6, tolerance=PAIRS.tolerance)
    assert again.affected_shards == [] and (again.similarity, again.likelihood) == (first.similarity, first.likelihood)
    before = lake.read_parquet(QUALITY.table("s1"))
    quality_shard(lake, "s1", config, judge=coca)  # the re-scored shard still matches the thresholds' digests
    assert lake.read_parquet(QUALITY.table("s1")).equals(before)
