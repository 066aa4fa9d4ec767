"""The graph runs itself: a real ``dagster-daemon`` on a SQLite instance, and nothing else driving it.

Two WARCs of the sample web are dropped under ``sources/``; the new-sources sensor registers them and the automation
sensor runs every stage down to ``evaluation``, each global step once for the pair. Then a third WARC and a file
that is no WARC at all arrive together: the third shard flows through every stage, the broken one fails its own
run and holds nothing back, and the older shards re-run only what a global step says it changed for them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunsFilter

from infra.deploy.local_services import wait_for
from infra.lake import Lake
from infra.sample_web import ORIGIN, serve
from infra.tracking import CHAMPION, DAGSTER_RUN_TAG, END_STATUS, KIND_TAG, Tracker, default_tracking_uri
from ops import graph
from pipelines.automation import AFFECTED
from pipelines.daemon import running_daemon, wait_until_settled
from pipelines.demo import prepare_sample_web, publish_source
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

SETTLE_TIMEOUT = 1200
QUIET_SECONDS = 15


def _materializations(instance: DagsterInstance, stage: str, shard: str | None = None, after: int = 0):
    partitions = [shard] if shard is not None else None
    return instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(stage), asset_partitions=partitions, after_storage_id=after), limit=1000
    ).records


def _max_storage_id(instance: DagsterInstance) -> int:
    ids = [r.storage_id for s in graph.stages() for r in _materializations(instance, s)]
    return max(ids, default=0)


def _evaluations(instance: DagsterInstance) -> int:
    return len(_materializations(instance, "evaluation"))


def _all_ended(tracker: Tracker) -> bool:
    runs = tracker.client.search_runs([tracker.experiment_id], "attributes.status = 'RUNNING'")
    return not runs


@pytest.fixture
def world(tmp_path: Path):
    lake_root, home = tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    lake = Lake(str(lake_root))
    port = free_port()
    web = prepare_sample_web(
        lake, lake_root / "sample_web", ORIGIN, seed=5, publish=False, n_shards=3, pages_per_shard=6, slow_links=0
    )
    env = {
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": str(lake_root),
        "CLIPFOUNDRY_SAMPLE_WEB_PORT": str(port),
        "DAGSTER_HOME": str(home),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with serve(web.site_dir, port=port):
            yield lake, home, web.warc_paths, DagsterInstance.from_config(str(home))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.timeout(2700)
def test_new_sources_flow_through_every_stage_and_only_the_new_shard_reruns(world):
    lake, home, warcs, instance = world
    shards = [f"sample_web.{w.name.split('.')[0]}" for w in warcs]
    per_shard = [s.name for s in graph.shard_stages()]
    global_steps = [s.name for s in graph.stages().values() if not s.per_shard]
    for warc in warcs[:2]:
        publish_source(lake, warc)

    with running_daemon(home) as daemon:
        assert wait_until_settled(
            instance, lambda: _evaluations(instance) >= 1, QUIET_SECONDS, SETTLE_TIMEOUT, daemon
        ), (home / "daemon.log").read_text()[-4000:]
        runs = instance.get_runs()
        assert runs and all(r.status == DagsterRunStatus.SUCCESS for r in runs), [(r.run_id, r.status) for r in runs]
        for stage in per_shard:
            for shard in shards[:2]:
                assert len(_materializations(instance, stage, shard)) == 1, (stage, shard)
        for stage in global_steps:
            assert len(_materializations(instance, stage)) == 1, stage
        # a shard's stages of one level ran together, as one run
        [crawl] = _materializations(instance, "crawl", shards[0])
        [download] = _materializations(instance, "download", shards[0])
        assert crawl.run_id == download.run_id

        before = _max_storage_id(instance)
        publish_source(lake, warcs[2])
        lake.write_bytes("sources/sample_web/broken.warc.gz", os.urandom(4096))
        assert wait_until_settled(
            instance, lambda: _evaluations(instance) >= 2, QUIET_SECONDS, SETTLE_TIMEOUT, daemon
        ), (home / "daemon.log").read_text()[-4000:]
        # the run-status sensors end each run's MLflow runs; they need the daemon, so this waits before it stops
        tracker = Tracker(default_tracking_uri(Path(lake.path("mlflow"))), "clipfoundry")
        assert wait_for(lambda: _all_ended(tracker), 180, 2, "the run-status sensors to end every MLflow run")

    failed = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    assert [r.tags.get("dagster/partition") for r in failed] == ["sample_web.broken"]
    assert not any(_materializations(instance, stage, "sample_web.broken") for stage in per_shard)
    for stage in per_shard:
        assert len(_materializations(instance, stage, shards[2], after=before)) == 1, stage
    for stage in global_steps:  # once per batch; a list built once is not rebuilt
        expected = 0 if graph.stage(stage).trigger == "once" else 1
        assert len(_materializations(instance, stage, after=before)) == expected, stage

    named: dict[str, set[str]] = {}
    for stage in global_steps:
        for record in _materializations(instance, stage, after=before):
            value = record.asset_materialization.metadata.get(AFFECTED)
            named.setdefault(stage, set()).update(value.value if value is not None else [])
    for shard in shards[:2]:
        reran = Counter(s for s in per_shard if _materializations(instance, s, shard, after=before))
        for stage in reran:
            shard_deps, global_deps = graph.triggering_deps(stage)
            why = [g for g in global_deps if shard in named.get(g, set())] + [d for d in shard_deps if d in reran]
            assert why, f"{stage} re-ran for the old shard {shard} with nothing upstream naming it"
        assert not {"crawl", "download", "image_hashes"} & set(reran)

    # the runs belong to the code location, launched by the automation sensor; MLflow tells the same story
    for run in instance.get_runs():
        assert run.remote_job_origin.location_name == "pipelines.definitions"
        assert run.tags.get("dagster/sensor_name") == "automation_sensor"
    tracker = Tracker(default_tracking_uri(Path(lake.path("mlflow"))), "clipfoundry")
    statuses = {run.run_id: run.status.value for run in instance.get_runs()}
    by_kind: dict[str, set[str]] = {}
    for mlflow_run in tracker.client.search_runs([tracker.experiment_id], max_results=5000):
        tags = mlflow_run.data.tags
        assert mlflow_run.info.status == END_STATUS[statuses[tags[DAGSTER_RUN_TAG]]], tags
        by_kind.setdefault(tags[KIND_TAG], set()).add(mlflow_run.info.run_name)
    assert any(" · sample_web.shard-0000" in name for name in by_kind["run"])  # named after what ran, and where
    assert by_kind["evaluation"] and by_kind["shard"]
    champion = tracker.client.get_model_version_by_alias("clipfoundry-clip", CHAMPION)
    assert any(k.startswith("eval.eval/sample_web/top1") for k in champion.tags)
    assert champion.description and champion.tags["dataset.manifest"].startswith("file://")

    # every asset links to its MLflow run, and `clipfoundry trace` follows one kept sample through every stage
    [made] = _materializations(instance, "quality", shards[2])
    assert made.asset_materialization.metadata["mlflow_run"].value.startswith("http://127.0.0.1:5000/#/experiments/")
    kept = lake.read_parquet(graph.stage("recaption").table(shards[2])).filter(pc.field("kept"))["uid"][0].as_py()
    traced = subprocess.run(
        [str(Path(sys.executable).parent / "clipfoundry"), "trace", kept, "--json"],
        env=dict(os.environ),  # the world's demo profile and data root
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    stages = [json.loads(line)["stage"] for line in traced.stdout.splitlines()]
    assert [s for s in dict.fromkeys(stages) if s != "dataset"] == per_shard  # in pipeline order, none missing
