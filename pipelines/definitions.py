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
from pipelines.sensors import TRACKING_SENSORS, new_sources_sensor_for, refresh_sensor


def stage_assets(retrain_cron: str | None = None) -> list[AssetsDefinition]:
    """Every asset of the ``assets`` package, each with its stage's automation condition; exactly the declared
    stages, or the load fails naming the difference."""
    found = [a for a in load_assets_from_package_module(assets) if isinstance(a, AssetsDefinition)]
    names = sorted(key.to_user_string() for a in found for key in a.keys)
    declared = sorted(graph.stages())
    if names != declared:
        raise ValueError(f"assets {names} do not match the declared stages {declared}")
    return [
        a.map_asset_specs(
            lambda spec: spec.replace_attributes(automation_condition=condition_for(spec.key.path[-1], retrain_cron))
        )
        for a in found
    ]


def build_definitions(profile: str | None = None, resources_override: dict | None = None) -> Definitions:
    """The code location for a profile (tests pass their own resources)."""
    profile = profile or current_profile()
    return Definitions(
        assets=stage_assets(stage_settings(profile)["model_settings"].retrain_cron),
        jobs=JOBS,
        sensors=[
            new_sources_sensor_for(sensor_interval()),
            refresh_sensor,
            automation_sensor(sensor_interval()),
            *TRACKING_SENSORS,
        ],
        resources=resources_override or resources(profile),
        executor=executor(),
    )


defs = build_definitions()
