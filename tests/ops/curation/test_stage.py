"""The curation stage over a lake built by the real ops: per-shard matching of what dedup kept, the global entry
counts, the metadata publication, and the balancing helpers the dataset step and the reports use."""

import shutil

import numpy as np
import pyarrow as pa
import pytest

from infra.lake import Lake
from ops import graph
from ops.curation.balancing import draw_reference, p_keep_reference, threshold_for_tail_fraction
from ops.curation.config import BalanceConfig, CurationConfig
from ops.curation.matching import match_reference
from ops.curation.reasons import REASONS
from ops.curation.stage import (
    CURATION_SCHEMA,
    ENTRY_COUNTS,
    METADATA,
    balance_draws,
    balance_summary,
    count_entries,
    entry_count_curve,
    load_entry_counts,
    match_shard,
    publish_metadata,
    shard_p_keep,
)
from ops.ledger import check_ledger, kept_uids
from ops.report import ConservationError, StageReport
from ops.stage import conservation_problems
from tests.ops.lakes import Pair, ingest, jpeg, run

ENTRIES = ["dog", "cat", "hot dog", "sunset", "Beach", "dog"]
SHARDS = ["s0", "s1", "s2"]
CURATION = graph.stage("curation")


def pairs_for(shard: int) -> list[Pair]:
    """60 dog photos (the head), a tail, and captions that match nothing; every tenth URL fails, and in s1 every
    seventh image repeats the one before it (dedup drops the copy)."""
    head = [f"a dog photo {i}" for i in range(60)]
    tail = ["my cat", "Sunset on the Beach"]
    none = ["nothing to see", "", "DOG"]
    pairs: list[Pair] = []
    for i, text in enumerate(head + tail + none):
        image = None if i % 10 == 3 else jpeg(1000 * shard + i)
        if shard == 1 and i % 7 == 5 and pairs[-1].image is not None:
            image = pairs[-1].image
        pairs.append(Pair(f"s{shard}-{i}", f"{text} s{shard}" if text else text, image))
    return pairs


@pytest.fixture(scope="module")
def deduplicated(tmp_path_factory) -> Lake:
    """Three shards crawled, downloaded and deduplicated; tests copy it before changing anything."""
    lake = Lake(str(tmp_path_factory.mktemp("curation") / "lake"))
    for s, shard in enumerate(SHARDS):
        ingest(lake, shard, pairs_for(s))
    run(lake, SHARDS, "dedup")
    return lake


@pytest.fixture
def lake(deduplicated, tmp_path) -> Lake:
    shutil.copytree(deduplicated.path("crawl").rsplit("/crawl", 1)[0], tmp_path / "lake")
    return Lake(str(tmp_path / "lake"))


def dedup_kept(lake: Lake, shard: str) -> list[str]:
    return kept_uids(lake.read_parquet(graph.stage("dedup").table(shard), ["uid", "kept"]))


def texts(lake: Lake) -> dict[str, str]:
    out = {}
    for shard in SHARDS:
        crawl = lake.read_parquet(graph.stage("crawl").table(shard))
        out |= dict(zip(crawl["uid"].to_pylist(), crawl["text"].to_pylist(), strict=True))
    return out


def test_matches_of_what_dedup_kept_and_counts_over_all_shards(lake):
    text_of = texts(lake)
    assert dedup_kept(lake, "s1") != kept_uids(lake.read_parquet(graph.stage("download").table("s1")))
    expected_counts = np.zeros(len(ENTRIES), int)
    for shard in SHARDS:
        uids = dedup_kept(lake, shard)
        report = match_shard(lake, shard, ENTRIES)
        table = lake.read_parquet(CURATION.table(shard))
        assert table.schema.equals(CURATION_SCHEMA)
        assert table["uid"].to_pylist() == uids
        reference = match_reference([text_of[u] for u in uids], ENTRIES)
        assert table["entry_ids"].to_pylist() == reference
        assert table["kept"].to_pylist() == [bool(r) for r in reference]
        assert check_ledger(table, REASONS, report, uids) == []
        assert conservation_problems(lake, CURATION, shard) == []
        assert report.rows_in == len(uids) and report.dropped["no_match"] == sum(not r for r in reference)
        assert StageReport.from_dict(lake.read_json(CURATION.report(shard))).rows_in == len(uids)
        assert report.extra["matches"] == sum(map(len, reference))
        for r in reference:
            expected_counts[r] += 1

    counts_report = count_entries(lake, ENTRIES, SHARDS)
    counts, entries = load_entry_counts(lake)
    assert counts.tolist() == expected_counts.tolist() and entries == ENTRIES
    assert counts[0] == counts[5] > 100 and counts[1] == 3  # duplicate entries counted alike; cat is tail
    assert counts_report.rows_in == sum(len(dedup_kept(lake, s)) for s in SHARDS)
    assert counts_report.extra["metadata_sha"] == report.extra["metadata_sha"]
    assert counts_report.extra["shards"] == 3 and lake.exists(ENTRY_COUNTS)
    assert lake.exists("curation/entry_counts/report.json")


def test_p_keep_draws_and_summaries_follow_the_stored_matches(lake):
    for shard in SHARDS:
        match_shard(lake, shard, ENTRIES)
    count_entries(lake, ENTRIES, SHARDS)
    counts, _ = load_entry_counts(lake)
    t = 20.0
    config = BalanceConfig(t=t, seed=1)
    kept_any = dropped_any = 0
    for shard in SHARDS:
        uids, p = shard_p_keep(lake, shard, counts, t)
        table = lake.read_parquet(CURATION.table(shard))
        assert uids.to_pylist() == table["uid"].to_pylist()
        for ids, value in zip(table["entry_ids"].to_pylist(), p, strict=True):
            reference = p_keep_reference(np.array([0, len(ids)]), np.array(ids, np.int64), counts, t)[0]
            assert value == reference
            if not ids:
                assert value == 0.0
            elif any(counts[e] <= t for e in ids):
                assert value == 1.0
            else:
                assert 0 < value < 1
        decided = balance_draws(uids, p, config)
        assert decided.tolist() == [draw_reference(u, 1) < v for u, v in zip(uids.to_pylist(), p, strict=True)]
        kept_any += int(decided[(p > 0) & (p < 1)].sum())
        dropped_any += int((~decided[(p > 0) & (p < 1)]).sum())
    assert kept_any > 0 and dropped_any > 0  # the head is cut, not emptied

    summary = balance_summary(lake, config)
    assert summary["t"] == t and summary["entries_above_t"] == 2 and summary["top_entries"][0]["entry"] == "dog"
    assert balance_summary(lake, BalanceConfig(tail_fraction=0.5))["t"] == threshold_for_tail_fraction(counts, 0.5)
    curve = entry_count_curve(lake, SHARDS, config)
    assert curve["before"][0] == counts[0] and curve["before"].sum() == counts.sum()
    assert (curve["after"] >= np.minimum(curve["before"], t) - 1e-9).all() and curve["after"][0] < counts[0] / 2


def test_matches_and_counts_do_not_depend_on_shard_order_or_reruns(lake, tmp_path):
    for shard in SHARDS:
        match_shard(lake, shard, ENTRIES)
    other = Lake(str(tmp_path / "other"))
    for folder in ("crawl", "download", "dedup"):
        shutil.copytree(lake.path(folder), other.path(folder))
    for shard in reversed(SHARDS):
        match_shard(other, shard, ENTRIES)
    count_entries(lake, ENTRIES, SHARDS)
    count_entries(other, ENTRIES, list(reversed(SHARDS)))
    assert lake.read_parquet(ENTRY_COUNTS).equals(other.read_parquet(ENTRY_COUNTS))
    for shard in SHARDS:
        assert other.read_parquet(CURATION.table(shard)).equals(lake.read_parquet(CURATION.table(shard)))
    first = lake.read_parquet(CURATION.table("s0"))
    match_shard(lake, "s0", ENTRIES)
    assert lake.read_parquet(CURATION.table("s0")).equals(first)


def test_publishing_the_same_list_again_affects_no_shard(lake):
    lake.write_json("inputs/entries.json", ENTRIES)
    config = CurationConfig(metadata_uri="inputs/entries.json")
    first = publish_metadata(lake, config, SHARDS)
    assert first.extra["affected_shards"] == SHARDS and first.extra["entries"] == len(ENTRIES)
    assert lake.read_json(METADATA) == ENTRIES
    assert publish_metadata(lake, config, SHARDS).extra["affected_shards"] == []
    lake.write_json("inputs/entries.json", [*ENTRIES, "beach"])
    assert publish_metadata(lake, config, SHARDS).extra["affected_shards"] == SHARDS


def test_missing_text_and_mismatched_lists_raise(lake):
    table = lake.read_parquet(graph.stage("dedup").table("s0"))
    stranger = pa.table({name: [table[name][0].as_py()] for name in table.column_names}, schema=table.schema)
    lake.write_parquet(graph.stage("dedup").table("s0"), stranger.set_column(0, "uid", pa.array(["f" * 32])))
    with pytest.raises(ConservationError, match="have no crawl row"):
        match_shard(lake, "s0", ENTRIES)
    assert not lake.exists(CURATION.table("s0"))
    match_shard(lake, "s2", ENTRIES)
    with pytest.raises(ValueError, match="another list"):
        count_entries(lake, ENTRIES[:2], ["s2"])
    with pytest.raises(ValueError, match="another list"):
        shard_p_keep(lake, "s2", np.array([5, 5]), 1.0)
    with pytest.raises(ValueError, match="set t or tail_fraction"):
        BalanceConfig(t=None).threshold(np.array([1, 2]))
