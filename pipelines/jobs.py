"""Jobs, derived from the stage graph: one per group of stages that can run together (see :func:`ops.graph.waves`).

Dagster runs one partitions definition per job, so the groups alternate: per-shard stages between two global
steps (run per shard, or over a partition range), then the global steps after them. The graph runs itself
through automation (:mod:`pipelines.automation`); these jobs are for people who want to run one group by hand
from the launchpad or ``dagster job launch``. A job is named after the first stage of its group.
"""

from dagster import AssetSelection, define_asset_job

from ops import graph


def _job(scope: str, stages: list[graph.Stage]):
    names = [s.name for s in stages]
    where = "Per shard" if scope == "shard" else "Global (over all shards)"
    return define_asset_job(
        f"{names[0]}_job",
        selection=AssetSelection.assets(*names),
        description=f"{where}: {', '.join(names)}.",
    )


JOBS = [_job(scope, stages) for scope, stages in graph.waves()]
