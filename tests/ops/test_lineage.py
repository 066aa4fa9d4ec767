import pyarrow as pa

from infra.lake import Lake
from ops.layout import shard_of_table
from ops.lineage import trace


def test_trace_follows_a_uid_through_every_stage_table(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_parquet(
        "crawl/s1.parquet",
        pa.table(
            {
                "uid": ["a", "b", "a"],
                "kept": [True, True, False],
                "reason": ["", "", "duplicate_pair"],
                "url": ["u", "v", "u"],
            }
        ),
    )
    lake.write_parquet(
        "download/s1.parquet", pa.table({"uid": ["a", "b"], "kept": [True, False], "reason": ["", "http_client_error"]})
    )
    lake.write_parquet(
        "dedup/s1.parquet",
        pa.table({"uid": ["a"], "kept": [False], "reason": ["near_duplicate"], "duplicate_of": ["z"]}),
    )
    lake.write_parquet("dedup/hashes/s1.parquet", pa.table({"uid": ["a"], "kept": [True], "reason": [""]}))
    rows = trace(lake, "a")
    assert [(r["stage"], r["kept"], r["reason"]) for r in rows] == [
        ("crawl", True, ""),
        ("crawl", False, "duplicate_pair"),
        ("download", True, ""),
        ("dedup", False, "near_duplicate"),
    ]
    assert rows[-1]["duplicate_of"] == "z"
    assert trace(lake, "b")[-1]["reason"] == "http_client_error"
    assert trace(lake, "nope") == []
    assert trace(lake, "a", shards=["other"]) == []


def test_only_top_level_stage_tables_count():
    assert shard_of_table("dedup", "dedup/s1.parquet") == "s1"
    assert shard_of_table("dedup", "dedup/hashes/s1.parquet") is None
    assert shard_of_table("dedup", "dedup/s1.report.json") is None
