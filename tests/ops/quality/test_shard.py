"""The quality op end to end on a small shard: ledger, upstream choice, honest defaults, CLIP, a tiny real VLM
judge through the production loader, and resume after an interruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.lake import Lake
from ops.layout import report_path, table_path
from ops.ledger import check_ledger
from ops.quality import reasons as R
from ops.quality.clip_score import ClipModelSpec, ClipScorer, clip_score_shard, clip_threshold
from ops.quality.heuristics import DATACOMP_BASIC
from ops.quality.judge import JudgeConfig
from ops.quality.shard import SCHEMA, QualityConfig, quality_shard
from ops.report import StageReport
from ops.vlm import VlmConfig, load_backend
from tests.ops.quality.shards import Sample, many, write_shard, write_stage
from tests.ops.quality.tiny_clip import NAME, build_checkpoint

MIXED = [
    *many(4),
    Sample("german", lang="de"),
    Sample("short", text="a cat"),
    Sample("small", width=150, height=400),
    Sample("wide", width=1000, height=300),
    Sample("bad", image="corrupt"),
    Sample("gone", image="missing"),
    Sample("failed", downloaded=False),
]
ENTERING = [s.uid for s in MIXED if s.downloaded]


def read(lake: Lake, shard: str = "s0"):
    table = lake.read_parquet(table_path("quality", shard))
    report = StageReport.from_dict(lake.read_json(report_path("quality", shard)))
    return table, report


def reasons(table) -> dict[str, str]:
    return dict(zip(table["uid"].to_pylist(), table["reason"].to_pylist(), strict=True))


def test_heuristics_only_records_missing_models_and_balances(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", MIXED)
    lake.delete("download/s0.tar")  # no model filter, so the pixels are never read
    report = quality_shard(lake, "s0", QualityConfig())
    table, written = read(lake)
    assert table.schema == SCHEMA
    assert table["uid"].to_pylist() == ENTERING
    assert check_ledger(table, R.REASONS, written, ENTERING) == []
    assert report.to_dict() == written.to_dict()
    assert report.extra["clip_score"] == "no CLIP model configured"
    assert report.extra["judge"] == "no judge configured"
    assert report.extra["upstream"] == "download"
    got = reasons(table)
    assert [got[u] for u in ("german", "short", "small", "wide")] == [
        R.LANGUAGE,
        R.CAPTION_TOO_SHORT,
        R.IMAGE_TOO_SMALL,
        R.ASPECT_RATIO,
    ]
    assert got["bad"] == got["gone"] == ""  # no model looked at pixels, so nothing is known about them
    assert table["clip_score"].null_count == table["judge_score"].null_count == table.num_rows


def test_upstream_defaults_to_curation_then_dedup(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", many(6))
    write_stage(lake, "dedup", "s0", {f"u{i:03d}": i != 0 for i in range(6)})
    assert read_uids(lake) == [f"u{i:03d}" for i in range(1, 6)]
    write_stage(lake, "curation", "s0", {f"u{i:03d}": i % 2 == 1 for i in range(1, 6)})
    assert read_uids(lake) == ["u001", "u003", "u005"]
    quality_shard(lake, "s0", QualityConfig(), upstream="dedup")
    assert read(lake)[0]["uid"].to_pylist() == [f"u{i:03d}" for i in range(1, 6)]


def read_uids(lake: Lake) -> list[str]:
    report = quality_shard(lake, "s0", QualityConfig())
    table, _ = read(lake)
    assert report.rows_in == table.num_rows
    return table["uid"].to_pylist()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipScorer:
    _, path = build_checkpoint(tmp_path_factory.mktemp("clip"))
    return ClipScorer(ClipModelSpec(model=NAME, pretrained=str(path)))


def test_clip_absolute_threshold(tmp_path: Path, clip: ClipScorer) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", MIXED)
    quality_shard(lake, "s0", QualityConfig(clip_threshold=0.0), clip=clip)
    table, report = read(lake)
    assert check_ledger(table, R.REASONS, report, ENTERING) == []
    scores = dict(zip(table["uid"].to_pylist(), table["clip_score"].to_pylist(), strict=True))
    got = reasons(table)
    assert got["bad"] == got["gone"] == R.UNDECODABLE
    assert got["german"] == R.LANGUAGE and scores["german"] is not None  # scored, but heuristics decide first
    for uid in (s.uid for s in many(4)):
        assert got[uid] == ("" if scores[uid] >= 0.0 else R.CLIP_SCORE_LOW)
    assert report.extra["clip_model"] == clip.name and report.extra["clip_threshold"] == 0.0


def test_clip_top_fraction_uses_the_global_threshold(tmp_path: Path, clip: ClipScorer) -> None:
    lake = Lake(str(tmp_path))
    for shard, prefix in (("s0", "a"), ("s1", "b")):
        write_shard(lake, shard, many(10, prefix))
        clip_score_shard(lake, shard, clip, upstream="download")
    config = QualityConfig(clip_top_fraction=0.5)
    with pytest.raises(FileNotFoundError, match="clip_threshold"):
        quality_shard(lake, "s0", config, clip=clip)
    global_threshold = clip_threshold(lake, ["s1", "s0"], 0.5)
    kept = 0
    for shard in ("s0", "s1"):
        report = quality_shard(lake, shard, config, clip=clip)
        assert report.extra["clip_threshold"] == global_threshold.threshold
        kept += report.rows_kept
    scores = [s for shard in ("s0", "s1") for s in lake.read_parquet(f"quality/clip/{shard}.parquet")["clip_score"]]
    assert kept == sum(s.as_py() >= global_threshold.threshold for s in scores)
    assert kept == 11  # 20 × 0.5 + the sample at the threshold itself, as DataComp keeps it
    with pytest.raises(ValueError, match="exactly one"):
        quality_shard(lake, "s0", QualityConfig(), clip=clip)


@pytest.fixture(scope="module")
def qwen_judge(tiny_qwen2_vl: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_backend(VlmConfig(model=str(tiny_qwen2_vl), name="tiny-qwen2-vl"))


def test_tiny_qwen_judge_runs_and_is_parsed_honestly(tmp_path: Path, qwen_judge) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", MIXED)
    report = quality_shard(
        lake, "s0", QualityConfig(judge=JudgeConfig(max_new_tokens=8, batch_size=3)), judge=qwen_judge
    )
    table, written = read(lake)
    assert check_ledger(table, R.REASONS, written, ENTERING) == []
    got = reasons(table)
    judged = [s.uid for s in many(4)]
    assert got["bad"] == got["gone"] == R.UNDECODABLE
    # a random model writes gibberish: every judged pair is dropped as unparseable, with its answer kept
    assert all(got[u] == R.JUDGE_UNPARSEABLE for u in judged)
    rows = {r["uid"]: r for r in table.to_pylist()}
    assert all(rows[u]["judge_answer"] is not None and rows[u]["judge_error"] for u in judged)
    assert report.dropped[R.JUDGE_UNPARSEABLE] == 4
    assert report.extra["judge"] == "tiny-qwen2-vl" and report.extra["model_seconds"] > 0
    assert rows["german"]["judge_answer"] is None  # dropped by a heuristic, never shown to the judge


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
    config = QualityConfig(heuristics=DATACOMP_BASIC, judge=JudgeConfig(max_new_tokens=6, batch_size=3))
    whole = Lake(str(tmp_path / "whole"))
    write_shard(whole, "s0", samples)
    quality_shard(whole, "s0", config, judge=qwen_judge)

    lake = Lake(str(tmp_path / "resumed"))
    write_shard(lake, "s0", samples)
    first = DiesAfter(qwen_judge, calls=2)
    with pytest.raises(Interrupted):
        quality_shard(lake, "s0", config, judge=first)
    assert not lake.exists(table_path("quality", "s0"))
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


def test_a_shard_where_nothing_entered(tmp_path: Path, clip: ClipScorer, qwen_judge) -> None:
    lake = Lake(str(tmp_path))
    write_shard(lake, "s0", [Sample("failed", downloaded=False)])
    report = quality_shard(lake, "s0", QualityConfig(clip_threshold=0.2), clip=clip, judge=qwen_judge)
    table, _ = read(lake)
    assert table.num_rows == report.rows_in == 0 and table.schema == SCHEMA
    assert lake.list("quality") == [
        "quality/clip/s0.parquet",
        "quality/clip/s0.report.json",
        "quality/s0.parquet",
        "quality/s0.report.json",
    ]
