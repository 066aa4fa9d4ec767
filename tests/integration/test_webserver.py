"""The UI path: a headless dagster-webserver and dagster-daemon on the Postgres instance, driven over GraphQL.

The webserver and the daemon load the project's code location with the production services: S3 lake, MLflow
server, Postgres storage from ``infra/deploy/dagster.yaml``; automation is off here, so the test alone decides what
runs. It does what a person does in the UI: add a shard partition, launch a job for it, read the materialisation
and its metadata; then turn on the new-sources sensor (a new file becomes a partition) and the refresh sensor,
ticking every minute here, whose tick submits one backfill of the whole graph (cancelled once seen).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from infra.deploy.local_services import free_port, start, stop, wait_for, wait_server
from ops import graph
from pipelines.sensors import REFRESH_TAG
from tests.conftest import REPO
from tests.integration.conftest import dagster_home_for, service_env

pytestmark = pytest.mark.integration

LOCATION = "pipelines.definitions"
REPOSITORY = "__repository__"
RUN_TIMEOUT = 300


@dataclass
class Ui:
    url: str
    client: DagsterGraphQLClient
    logs: dict[str, Path]

    def query(self, query: str, **variables) -> dict:
        reply = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        reply.raise_for_status()
        body = reply.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def locations(self) -> list[dict]:
        """What the webserver loaded, for failure messages: location names, load errors, repositories."""
        return self.query(
            """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename
                 ... on PythonError { message } ... on RepositoryLocation { repositories { name } } } } } } }"""
        )["workspaceOrError"]["locationEntries"]

    def runs(self, **tag) -> list[dict]:
        [(key, value)] = tag.items()
        data = self.query(
            """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
                 ... on Runs { results { runId status tags { key value } } } } }""",
            tags=[{"key": key, "value": value}],
        )
        return data["runsOrError"]["results"]


@pytest.fixture(scope="module")
def ui(s3_server, s3_web, mlflow_server, postgres, tmp_path_factory) -> Iterator[Ui]:
    tmp = Path(tempfile.mkdtemp(prefix="clipfoundry-ui-"))  # outside pytest's rotating basetemp: servers live long
    _home, pg_env = dagster_home_for(postgres, tmp, "dagster_ui")
    workspace = tmp / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: {LOCATION}\n      working_directory: {REPO}\n"
    )
    env = {
        **os.environ,
        **service_env(s3_server, s3_web, mlflow_server),
        **pg_env,
        "CLIPFOUNDRY_REFRESH_CRON": "* * * * *",
        "CLIPFOUNDRY_AUTOMATION": "off",
        "PYTHONPATH": str(REPO),
    }
    bin_dir = Path(sys.executable).parent
    port = free_port()
    logs = {"webserver": tmp / "webserver.log", "daemon": tmp / "daemon.log"}
    procs = []
    try:
        for name, cmd in (
            (
                "webserver",
                [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)],
            ),
            ("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)]),
        ):
            procs.append(start(cmd, logs[name], env=env, cwd=REPO))
        url = f"http://127.0.0.1:{port}"
        wait_server(procs[0], url + "/server_info", logs["webserver"], timeout=180)
        yield Ui(url, DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60), logs)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_run(ui: Ui, run_id: str) -> str:
    def finished():
        status = ui.client.get_run_status(run_id).value
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    return wait_for(finished, RUN_TIMEOUT, interval=2, what=f"run {run_id}")


def test_materialise_a_partition_through_graphql(ui, s3_web):
    shard = s3_web.shards[0]
    s3_web.publish(shard)
    added = ui.query(
        """mutation($key: String!, $repo: RepositorySelector!) {
             addDynamicPartition(partitionKey: $key, partitionsDefName: "shards", repositorySelector: $repo) {
               __typename ... on AddDynamicPartitionSuccess { partitionKey } } }""",
        key=shard,
        repo={"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
    )
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", ui.locations()

    run_id = ui.client.submit_job_execution(
        "crawl_job", repository_location_name=LOCATION, repository_name=REPOSITORY, tags={"dagster/partition": shard}
    )
    assert _wait_run(ui, run_id) == "SUCCESS", ui.logs["daemon"].read_text()[-3000:]

    data = ui.query(
        """query($partition: String!) { assetOrError(assetKey: {path: ["download"]}) { ... on Asset {
             assetMaterializations(partitions: [$partition]) { runId partition metadataEntries { label
               ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text }
               ... on MarkdownMetadataEntry { mdStr } } } } } }""",
        partition=shard,
    )
    [mat] = data["assetOrError"]["assetMaterializations"]
    assert (mat["runId"], mat["partition"]) == (run_id, shard)
    meta = {e["label"]: e for e in mat["metadataEntries"]}
    assert meta["rows_in"]["intValue"] == meta["rows_kept"]["intValue"] + meta["rows_dropped"]["intValue"]
    assert meta["rows_kept"]["intValue"] > 0
    assert meta["mlflow_run_id"]["text"]
    assert "| url |" in meta["preview"]["mdStr"]


def test_daemon_runs_the_new_sources_and_refresh_sensors(ui, s3_web):
    new_shard = s3_web.shards[1]
    s3_web.publish(new_shard)
    repo = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    for name in ("new_sources_sensor", "refresh_sensor"):
        started = ui.query(
            """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
                 __typename ... on Sensor { sensorState { status } } } }""",
            s={**repo, "sensorName": name},
        )
        assert started["startSensor"]["sensorState"]["status"] == "RUNNING", started

    def partitions() -> list[str]:
        data = ui.query("""{ assetNodeOrError(assetKey: {path: ["crawl"]}) { ... on AssetNode { partitionKeys } } }""")
        return data["assetNodeOrError"]["partitionKeys"]

    assert new_shard in wait_for(lambda: new_shard in partitions() and partitions(), RUN_TIMEOUT, 2, "the partition")

    def refresh_backfills() -> list[dict]:
        data = ui.query(
            """{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status
                 tags { key value } assetSelection { path } } } } }"""
        )
        return [
            b for b in data["partitionBackfillsOrError"]["results"] if any(t["key"] == REFRESH_TAG for t in b["tags"])
        ]

    [backfill] = wait_for(refresh_backfills, 200, 2, "a refresh_sensor tick after the one that armed it")
    assert {"/".join(a["path"]) for a in backfill["assetSelection"]} == set(graph.stages())
    cancelled = ui.query(
        """mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }""", id=backfill["id"]
    )
    assert cancelled["cancelPartitionBackfill"]["__typename"] == "CancelBackfillSuccess"
