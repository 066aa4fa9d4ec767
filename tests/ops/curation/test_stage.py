import shutil

import numpy as np
import pyarrow as pa
import pytest

from infra.lake import Lake
from ops.curation.balancing import threshold_for_tail_fraction
from ops.curation.matching import match_reference
from ops.curation.reasons import REASONS
from ops.curation.stage import (
    ENTRY_COUNTS,
    BalanceConfig,
    balance_shard,
    count_entries,
    entry_count_curve,
    load_entry_counts,
    match_shard,
)
from ops.layout import report_path, table_path
from ops.ledger import check_ledger
from ops.report import StageReport
from ops.uid import pair_uid

METADATA = ["dog", "cat", "hot dog", "sunset", "Beach", "dog"]


def texts_for(shard: int) -> list[str]:
    head = [f"a dog photo {i}" for i in range(60)]
    tail = ["my cat", "Sunset on the Beach"]
    none = ["nothing to see", "", "DOG"]
    return [f"{t} s{shard}" if t else t for t in head + tail + none]


def write_shard(lake: Lake, shard: int, with_dedup: bool) -> list[str]:
    """crawl + download ledger (+ dedup) tables for one shard; returns the uids that enter curation."""
    texts = texts_for(shard)
    urls = [f"http://img/{shard}/{i}.jpg" for i in range(len(texts))]
    uids = [pair_uid(u, t) for u, t in zip(urls, texts, strict=True)]
    crawl_kept = [bool(t) for t in texts]
    crawl = {
        "uid": [*uids, uids[0]],
        "url": [*urls, urls[0]],
        "text": [*texts, texts[0]],
        "lang": ["en"] * (len(texts) + 1),
        "kept": [*crawl_kept, False],
        "reason": ["" if k else "no_text" for k in crawl_kept] + ["duplicate_pair"],
    }
    lake.write_parquet(table_path("crawl", f"s{shard}"), pa.table(crawl))
    downloaded = [u for u, k in zip(uids, crawl_kept, strict=True) if k]
    download_kept = [i % 10 != 3 for i in range(len(downloaded))]
    lake.write_parquet(
        table_path("download", f"s{shard}"),
        pa.table({"uid": downloaded, "kept": download_kept, "reason": ["" if k else "timeout" for k in download_kept]}),
    )
    survivors = [u for u, k in zip(downloaded, download_kept, strict=True) if k]
    if with_dedup:
        dedup_kept = [i % 7 != 5 for i in range(len(survivors))]
        lake.write_parquet(
            table_path("dedup", f"s{shard}"),
            pa.table({"uid": survivors, "kept": dedup_kept, "reason": ["" if k else "exact" for k in dedup_kept]}),
        )
        survivors = [u for u, k in zip(survivors, dedup_kept, strict=True) if k]
    return survivors


@pytest.fixture
def lake_with_shards(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    survivors = {f"s{i}": write_shard(lake, i, with_dedup=i == 1) for i in range(3)}
    return lake, survivors


def test_end_to_end_match_count_balance(lake_with_shards):
    lake, survivors = lake_with_shards
    text_of = {}
    for i in range(3):
        crawl = lake.read_parquet(table_path("crawl", f"s{i}")).to_pylist()
        text_of |= {r["uid"]: r["text"] for r in crawl if r["kept"]}

    expected_counts = np.zeros(len(METADATA), int)
    for shard, uids in survivors.items():
        report = match_shard(lake, shard, METADATA)
        matches = lake.read_parquet(f"curation/matches/{shard}.parquet").to_pylist()
        assert [m["uid"] for m in matches] == uids
        reference = match_reference([text_of[u] for u in uids], METADATA)
        assert [m["entry_ids"] for m in matches] == reference
        assert report.rows_in == len(uids) and report.dropped["no_match"] == sum(not r for r in reference)
        assert report.extra["upstream"] == ("dedup" if shard == "s1" else "download")
        assert StageReport.from_dict(lake.read_json(report_path("curation/matches", shard))).rows_in == len(uids)
        for r in reference:
            expected_counts[r] += 1

    counts_report = count_entries(lake, METADATA)
    counts, entries = load_entry_counts(lake)
    assert counts.tolist() == expected_counts.tolist() and entries == METADATA
    assert counts[0] == counts[5] > 100 and 1 <= counts[1] <= 3  # duplicate entries counted alike; cat is tail
    assert counts_report.rows_in == sum(map(len, survivors.values()))
    assert counts_report.extra["metadata_sha"] == report.extra["metadata_sha"]
    assert lake.exists(ENTRY_COUNTS)

    t = 20.0
    for shard, uids in survivors.items():
        report = balance_shard(lake, shard, BalanceConfig(t=t, seed=1))
        table = lake.read_parquet(table_path("curation", shard))
        assert check_ledger(table, REASONS, report=report, expected_uids=uids) == []
        rows = {r["uid"]: r for r in table.to_pylist()}
        matches = {m["uid"]: m["entry_ids"] for m in lake.read_parquet(f"curation/matches/{shard}.parquet").to_pylist()}
        for uid, ids in matches.items():
            row = rows[uid]
            if not ids:
                assert row == {"uid": uid, "p_keep": 0.0, "kept": False, "reason": "no_match"}
            elif any(counts[e] <= t for e in ids):
                assert row["p_keep"] == 1.0 and row["kept"]
            else:
                assert 0 < row["p_keep"] < 1 and row["reason"] in ("", "balanced_out")
        assert report.dropped["balanced_out"] > 0
        assert report.extra["entries_above_t"] == 2 and report.extra["top_entries"][0]["entry"] == "dog"

    curve = entry_count_curve(lake, BalanceConfig(t=t, seed=1))
    assert curve["before"][0] == counts[0] and curve["before"].sum() == counts.sum()
    assert (curve["after"] >= np.minimum(curve["before"], t) - 1e-9).all() and curve["after"][0] < counts[0] / 2


def test_decisions_do_not_depend_on_shard_order_or_reruns(lake_with_shards, tmp_path):
    lake, survivors = lake_with_shards
    shards = sorted(survivors)
    for shard in shards:
        match_shard(lake, shard, METADATA)
    other = Lake(str(tmp_path / "other"))
    shutil.copytree(lake.path("crawl"), other.path("crawl"))
    shutil.copytree(lake.path("download"), other.path("download"))
    shutil.copytree(lake.path("dedup"), other.path("dedup"))
    for shard in reversed(shards):
        match_shard(other, shard, METADATA)
    count_entries(lake, METADATA)
    count_entries(other, METADATA)
    config = BalanceConfig(tail_fraction=0.5, seed=9)
    for shard in shards:
        balance_shard(lake, shard, config)
    for shard in reversed(shards):
        balance_shard(other, shard, config)
    first = {s: lake.read_parquet(table_path("curation", s)) for s in shards}
    for shard in shards:
        assert other.read_parquet(table_path("curation", shard)).equals(first[shard])
    balance_shard(lake, "s1", config)
    assert lake.read_parquet(table_path("curation", "s0")).equals(first["s0"])
    assert lake.read_parquet(table_path("curation", "s1")).equals(first["s1"])
    counts, _ = load_entry_counts(lake)
    assert lake.read_json(report_path("curation", "s0"))["extra"]["t"] == threshold_for_tail_fraction(counts, 0.5)


def test_missing_text_and_bad_config_raise(lake_with_shards):
    lake, _ = lake_with_shards
    lake.write_parquet(table_path("dedup", "s0"), pa.table({"uid": ["f" * 32], "kept": [True], "reason": [""]}))
    with pytest.raises(ValueError, match="no kept crawl row"):
        match_shard(lake, "s0", METADATA)
    match_shard(lake, "s2", METADATA)
    with pytest.raises(ValueError, match="another list"):
        balance_shard(lake, "s2", BalanceConfig(t=1), counts=np.array([5, 5]))
    with pytest.raises(ValueError, match="exactly one"):
        BalanceConfig().threshold(np.array([1, 2]))
