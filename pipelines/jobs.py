"""Jobs are asset selections; ``*_job`` names say so."""

from dagster import AssetSelection, define_asset_job

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.groups("ingest"),
    description="Per shard: crawl the source file, then download its images.",
)
