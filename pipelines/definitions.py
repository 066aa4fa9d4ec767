"""The code location: every declared stage's asset, run by Dagster's automation, plus jobs, sensors and resources.

Assets are collected from the ``assets`` package, so a new stage's asset module needs no line here; each gets its
automation condition from the stage graph (:mod:`pipelines.automation`), and a stage declared in
:mod:`ops.graph` without an asset (or an asset without a declaration) fails the load. Load it with
``dagster dev -w workspace.yaml`` or ``dagster asset materialize -m pipelines.definitions``.
"""

from dagster import AssetsDefinition, Definitions, load_assets_from_package_module

import assets
from ops import graph
from pipelines.automation import automation_sensor, condition_for
from pipelines.jobs import JOBS
from pipelines.profiles import current_profile, executor, resources, sensor_interval, stage_settings
from pipelines.sensors import new_sources_sensor_for, refresh_sensor


def _stage_assets() -> list[AssetsDefinition]:
    found = [a for a in load_assets_from_package_module(assets) if isinstance(a, AssetsDefinition)]
    names = sorted(key.to_user_string() for a in found for key in a.keys)
    declared = sorted(graph.stages())
    if names != declared:
        raise ValueError(f"assets {names} do not match the declared stages {declared}")
    cron = stage_settings(current_profile())["model_settings"].retrain_cron
    return [
        a.map_asset_specs(
            lambda spec: spec.replace_attributes(automation_condition=condition_for(spec.key.path[-1], cron))
        )
        for a in found
    ]


defs = Definitions(
    assets=_stage_assets(),
    jobs=JOBS,
    sensors=[new_sources_sensor_for(sensor_interval()), refresh_sensor, automation_sensor(sensor_interval())],
    resources=resources(),
    executor=executor(),
)
