"""crawl + download through Dagster with production services: an ``s3://`` lake on a real S3-protocol server,
an MLflow tracking server (Postgres store, S3 artifacts) and a Dagster instance on Postgres
(``infra/deploy/dagster.yaml``). One pipeline run per shard; every test reads its outputs back over the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import s3fs
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize
from mlflow import MlflowClient

from assets.crawl import crawl
from assets.download import download
from pipelines.partitions import shards
from pipelines.profiles import resources
from tests.integration.conftest import dagster_home_for, service_env

pytestmark = pytest.mark.integration


@dataclass
class Ran:
    instance: DagsterInstance
    run_ids: dict[str, str]
    env: dict[str, str]
    db: str


@pytest.fixture(scope="module")
def ran(s3_server, s3_web, mlflow_server, postgres, tmp_path_factory):
    for shard in s3_web.shards:
        s3_web.publish(shard)
    home, pg_env = dagster_home_for(postgres, tmp_path_factory.mktemp("pg_home"), "dagster_inproc")
    env = {**service_env(s3_server, s3_web, mlflow_server), **pg_env}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        instance = DagsterInstance.from_config(str(home))
        instance.add_dynamic_partitions(shards.name, s3_web.shards)
        res = resources()
        run_ids = {}
        for shard in s3_web.shards:
            result = materialize([crawl, download], partition_key=shard, resources=res, instance=instance)
            assert result.success
            run_ids[shard] = result.run_id
        yield Ran(instance, run_ids, env, "dagster_inproc")
        instance.dispose()


def test_outputs_land_on_s3(ran, s3_server, s3_web):
    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    prefix = s3_web.root.removeprefix("s3://")
    for shard in s3_web.shards:
        for rel in (
            f"crawl/{shard}.parquet",
            f"crawl/{shard}.report.json",
            f"download/{shard}.tar",
            f"download/{shard}.parquet",
            f"download/{shard}_stats.json",
            f"download/{shard}.report.json",
        ):
            assert fs.exists(f"{prefix}/{rel}"), rel
        report = s3_web.lake.read_json(f"download/{shard}.report.json")
        assert report["rows_kept"] > 0
        assert report["extra"]["tar_samples"] == report["rows_kept"]
    leftovers = [p for p in fs.find(prefix) if "/." in p or "_tmp" in p]
    assert leftovers == []


def test_dagster_storage_is_postgres(ran, postgres, s3_web):
    instance = ran.instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    for asset in ("crawl", "download"):
        records = instance.fetch_materializations(AssetKey(asset), limit=10).records
        assert sorted(r.partition_key for r in records) == s3_web.shards
        key = AssetCheckKey(AssetKey(asset), "rows_conserved")
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert check.event.dagster_event.event_specific_data.passed
    conn = psycopg2.connect(postgres.url(ran.db))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] == len(s3_web.shards)
        cur.execute("SELECT count(*) FROM dynamic_partitions WHERE partitions_def_name = 'shards'")
        assert cur.fetchone()[0] == len(s3_web.shards)
    conn.close()


def test_gpu_pool_limit_lives_in_postgres(ran):
    """The GPU pool's limit is set once per deployment (``dagster instance concurrency set gpu N``)."""
    storage = ran.instance.event_log_storage
    storage.set_concurrency_slots("gpu", 2)
    assert storage.get_concurrency_info("gpu").slot_count == 2
    assert "gpu" in storage.get_concurrency_keys()


def test_mlflow_server_has_runs_metrics_and_s3_artifacts(ran, mlflow_server, s3_server, s3_web):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("clipfoundry")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    for shard, run_id in ran.run_ids.items():
        query = f"tags.`dagster.run_id` = '{run_id}' and tags.`clipfoundry.kind` = 'shard'"
        [run] = client.search_runs([experiment.experiment_id], filter_string=query)
        assert run.data.tags["dagster.partitions"] == shard
        metrics = run.data.metrics
        assert metrics["download.rows_in"] == metrics["crawl.rows_kept"] > 0
        assert metrics["download.rows_kept"] + metrics["download.rows_dropped"] == metrics["download.rows_in"]
        history = client.get_metric_history(run.info.run_id, "crawl.rows_in")
        assert [m.step for m in history] == [0]
        files = {f.path for f in client.list_artifacts(run.info.run_id, "reports/download")}
        assert files == {f"reports/download/{shard}.json"}
        local = client.download_artifacts(run.info.run_id, f"reports/download/{shard}.json")
        assert f'"shard": "{shard}"' in Path(local).read_text()
    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    stored = [p for p in fs.find("mlflow/artifacts") if p.endswith(".json")]
    assert len(stored) >= 2 * len(s3_web.shards), "artifacts are proxied into the S3 bucket"
    assert "do-not-log" not in mlflow_server.log.read_text()


def test_register_and_load_a_tiny_model(mlflow_server):
    """A tiny pyfunc stands in for the CLIP model the training stage will register the same way."""
    import mlflow
    import pandas as pd

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input * 2

    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        client = MlflowClient(tracking_uri=mlflow_server.url)
        experiment = client.create_experiment("clipfoundry-registry-test")  # no global active experiment left behind
        with mlflow.start_run(experiment_id=experiment) as run:
            info = mlflow.pyfunc.log_model(name="model", python_model=Doubler(), registered_model_name="tiny-clip")
        [version] = client.search_model_versions("name = 'tiny-clip'")
        assert version.run_id == run.info.run_id
        client.set_registered_model_alias("tiny-clip", "candidate", version.version)
        loaded = mlflow.pyfunc.load_model("models:/tiny-clip@candidate")
        assert loaded.predict(pd.DataFrame({"x": [1, 2]}))["x"].tolist() == [2, 4]
        assert info.model_uri
    finally:
        mlflow.set_tracking_uri(None)
