"""The code location: every stage's assets, the jobs, the sensor and the profile's resources.

Load it with ``dagster dev -w workspace.yaml`` or ``dagster asset materialize -m pipelines.definitions``.
"""

from dagster import Definitions

from assets.crawl import crawl
from assets.curation import curation, curation_matches, entry_counts, metaclip_metadata
from assets.dataset import dataset
from assets.dedup import dedup, dedup_index, image_hashes
from assets.download import download
from assets.quality import clip_score_threshold, clip_scores, quality, recaption
from assets.training import evaluation, model
from pipelines.jobs import JOBS
from pipelines.profiles import executor, resources
from pipelines.schedules import refresh_schedule
from pipelines.sensors import new_sources_sensor

defs = Definitions(
    assets=[
        crawl,
        download,
        image_hashes,
        dedup_index,
        dedup,
        metaclip_metadata,
        curation_matches,
        entry_counts,
        curation,
        clip_scores,
        clip_score_threshold,
        quality,
        recaption,
        dataset,
        model,
        evaluation,
    ],
    jobs=JOBS,
    schedules=[refresh_schedule],
    sensors=[new_sources_sensor],
    resources=resources(),
    executor=executor(),
)
