"""``trace``: what every stage decided about one uid, on a lake the real ops built through the dataset."""

import pytest

from infra.lake import Lake
from ops import graph
from ops.curation.config import BalanceConfig
from ops.lineage import trace
from ops.quality.config import HeuristicRules, QualityConfig
from ops.sources import sync
from tests.ops.lakes import Pair, Settings, ingest, jpeg, run

FLOWING_AND_ANNOTATING = [s.name for s in graph.shard_stages()]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[Lake, dict[str, str]]:
    """Two registered shards; one pair in both, one failing download, one too short for quality."""
    lake = Lake(str(tmp_path_factory.mktemp("lineage") / "lake"))
    common = Pair("both", "a red bicycle leaning on a blue wall", jpeg(0, (320, 240)))
    first = [common, Pair("fails", "a blue door in the old town", None), Pair("short", "the cat", jpeg(1, (320, 240)))]
    second = [common, Pair("other", "a green door in the old town", jpeg(2, (320, 240)))]
    uids = ingest(lake, "s0", first) | ingest(lake, "s1", second)
    new, _ = sync(lake, known=set())  # the sources' registry, which trace reads the shard list from
    assert new == ["s0", "s1"]
    settings = Settings(quality=QualityConfig(heuristics=HeuristicRules(min_side=0)), balance=BalanceConfig(t=100))
    run(lake, ["s0", "s1"], "dataset", settings)
    return lake, uids


def by_stage_reason(rows, stage: str) -> str:
    return next(r["reason"] for r in rows if r["stage"] == stage)


def test_a_kept_sample_has_a_row_in_every_stage_and_the_dataset(lake):
    lake, uids = lake
    rows = trace(lake, uids["other"])
    assert [r["stage"] for r in rows] == [*FLOWING_AND_ANNOTATING, "dataset"]
    assert {r["shard"] for r in rows} == {"s1"}
    assert all(r["kept"] for r in rows if r["stage"] not in ("clip_scores", "judge_scores"))
    assert by_stage_reason(rows, "clip_scores") == "no_model"  # no CLIP model configured: recorded, not invented
    assert by_stage_reason(rows, "judge_scores") == "judge_off"  # no pair judge: unscored, on the record
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["dataset"]["p_keep"] == 1.0  # every entry is in the tail at t = 100
    assert by_stage["crawl"]["text"] == "a green door in the old town"
    assert by_stage["image_hashes"]["window_phash"].startswith("<")  # long lists are shortened for a reader
    assert by_stage["curation"]["entry_ids"] is not None


def test_drops_end_the_trail_with_their_reason(lake):
    lake, uids = lake
    failed = trace(lake, uids["fails"])
    assert [(r["stage"], r["kept"], r["reason"]) for r in failed] == [
        ("crawl", True, ""),
        ("download", False, "http_client_error"),
    ]
    short = trace(lake, uids["short"])
    assert [r["stage"] for r in short][-1] == "heuristics" and short[-1]["reason"] == "caption_too_short"


def test_a_pair_in_two_shards_is_traced_in_both(lake):
    lake, uids = lake
    rows = trace(lake, uids["both"])
    dedup = [r for r in rows if r["stage"] == "dedup"]
    assert sorted(r["kept"] for r in dedup) == [False, True]
    dropped = next(r for r in dedup if not r["kept"])
    assert dropped["reason"] == "duplicate_pair" and dropped["duplicate_of"] == uids["both"]
    assert trace(lake, uids["both"], shards=["s1"]) == [r for r in rows if r["shard"] == "s1"]


def test_only_declared_tables_are_read_whatever_else_the_stage_folders_hold(lake):
    lake, uids = lake
    for global_file in ("curation/metadata.json", "curation/entry_counts/counts.parquet", "dedup/index/summary.json"):
        assert lake.exists(global_file)
    lake.write_bytes("curation/notes.parquet", b"not a table")  # a stray file where a shard's table could be
    assert trace(lake, "no-such-uid") == []
    assert trace(lake, uids["other"], shards=["nope"]) == []
    lake.delete("curation/notes.parquet")
