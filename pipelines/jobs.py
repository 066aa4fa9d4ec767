"""Jobs are asset selections; ``*_job`` names say so.

Dagster runs one partitions definition per job, so the pipeline alternates per-shard jobs (run once per shard,
or over a partition range) with global jobs (run once over everything):
ingest → dedup_index → dedup (+ CLIP scores) → CLIP threshold → quality + recaption.
"""

from dagster import AssetSelection, define_asset_job

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets("crawl", "download", "image_hashes"),
    description="Per shard: crawl the source file, download its images, fingerprint them.",
)
dedup_index_job = define_asset_job(
    "dedup_index_job",
    selection=AssetSelection.assets("dedup_index"),
    description="Global: compare every shard's fingerprints and decide duplicates and eval contamination.",
)
dedup_job = define_asset_job(
    "dedup_job",
    selection=AssetSelection.assets("dedup", "clip_scores"),
    description="Per shard: write the shard's dedup decisions from the global index, then raw CLIP scores.",
)

clip_score_threshold_job = define_asset_job(
    "clip_score_threshold_job",
    selection=AssetSelection.assets("clip_score_threshold"),
    description="Global: the CLIP-score threshold that keeps the configured top fraction over all shards.",
)
quality_job = define_asset_job(
    "quality_job",
    selection=AssetSelection.assets("quality", "recaption"),
    description="Per shard: quality filters (heuristics, CLIP score, VLM judge), then recaptioning.",
)

JOBS = [ingest_job, dedup_index_job, dedup_job, clip_score_threshold_job, quality_job]
