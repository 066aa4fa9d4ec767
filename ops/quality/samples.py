"""The samples that enter a stage: the uids an upstream stage kept, with the caption, language and image size.

Decisions flow as columns keyed by ``uid``; text and language live in the crawl table and sizes and tar keys in
the download ledger, so they are looked up there rather than copied along from stage to stage.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from infra.lake import Lake
from ops.layout import table_path

QUALITY_UPSTREAMS = ("curation", "dedup", "download")


def default_upstream(lake: Lake, shard: str) -> str:
    """The latest stage before quality that exists for this shard: curation, else dedup, else download."""
    for stage in QUALITY_UPSTREAMS:
        if lake.exists(table_path(stage, shard)):
            return stage
    raise FileNotFoundError(f"no upstream table for shard {shard!r}: looked for {list(QUALITY_UPSTREAMS)}")


def load_samples(lake: Lake, shard: str, upstream: str) -> pa.Table:
    """uid, key, text, lang, original_width, original_height of the uids ``upstream`` kept, in its order."""
    kept = lake.read_parquet(table_path(upstream, shard), columns=["uid", "kept"])
    uids = kept.filter(pc.field("kept"))["uid"].combine_chunks()
    crawl = lake.read_parquet(table_path("crawl", shard), columns=["uid", "text", "lang"])
    ledger = lake.read_parquet(
        table_path("download", shard), columns=["uid", "key", "original_width", "original_height"]
    )
    out = {"uid": uids}
    for source, names in ((crawl, ("text", "lang")), (ledger, ("key", "original_width", "original_height"))):
        rows = pc.index_in(uids, value_set=source["uid"].combine_chunks())
        for name in names:
            out[name] = source[name].combine_chunks().take(rows)
    return pa.table(out)
