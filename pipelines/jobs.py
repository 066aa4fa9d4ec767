"""Jobs are asset selections; ``*_job`` names say so.

Dagster runs one partitions definition per job, so the pipeline alternates per-shard jobs (run once per shard,
or over a partition range) with global jobs (run once over everything):
ingest → dedup index + metadata → dedup + matching → entry counts → balancing + CLIP scores → CLIP threshold →
quality + recaption → dataset → model → evaluation.
"""

from dagster import AssetSelection, define_asset_job

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets("crawl", "download", "image_hashes"),
    description="Per shard: crawl the source file, download its images, fingerprint them.",
)
metadata_job = define_asset_job(
    "metadata_job",
    selection=AssetSelection.assets("dedup_index", "metaclip_metadata"),
    description="Global: the dedup index over every shard's fingerprints, and the MetaCLIP entry list.",
)
dedup_job = define_asset_job(
    "dedup_job",
    selection=AssetSelection.assets("dedup", "curation_matches"),
    description="Per shard: the shard's dedup decisions, then MetaCLIP matching of the surviving captions.",
)
entry_counts_job = define_asset_job(
    "entry_counts_job",
    selection=AssetSelection.assets("entry_counts"),
    description="Global: matches per MetaCLIP entry over every shard.",
)

clip_score_threshold_job = define_asset_job(
    "clip_score_threshold_job",
    selection=AssetSelection.assets("clip_score_threshold"),
    description="Global: the CLIP-score threshold that keeps the configured top fraction over all shards.",
)
curate_job = define_asset_job(
    "curate_job",
    selection=AssetSelection.assets("curation", "clip_scores"),
    description="Per shard: MetaCLIP balancing, then raw CLIP scores of the balanced pool.",
)
quality_job = define_asset_job(
    "quality_job",
    selection=AssetSelection.assets("quality", "recaption"),
    description="Per shard: quality filters (heuristics, CLIP score, VLM judge), then recaptioning.",
)

dataset_job = define_asset_job(
    "dataset_job",
    selection=AssetSelection.assets("dataset"),
    description="Global: write the versioned training shards from everything every stage kept.",
)

train_job = define_asset_job(
    "train_job",
    selection=AssetSelection.assets("model", "evaluation"),
    description="Global: train CLIP on the latest dataset under torchrun (Dagster Pipes), then evaluate it.",
)

JOBS = [
    ingest_job,
    metadata_job,
    dedup_job,
    entry_counts_job,
    curate_job,
    clip_score_threshold_job,
    quality_job,
    dataset_job,
    train_job,
]
