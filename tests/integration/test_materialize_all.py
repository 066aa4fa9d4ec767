"""The UI's "Materialize all": one asset backfill over every shard and every global step, launched through the GraphQL
API the UI uses, run by a real ``dagster-daemon``, and complete. Automation is off, so the backfill alone runs.

Dagster runs an asset backfill across the mixed partitioning in dependency order: each shard's stages up to a
global step, the global step once, then the next stages.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import requests
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from infra.deploy.local_services import free_port, start, stop, wait_for, wait_server
from infra.lake import Lake
from infra.sample_web import ORIGIN, serve
from ops import graph
from ops.sources import sync
from pipelines.demo import prepare_sample_web
from pipelines.partitions import shards
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _query(url: str, query: str, **variables) -> dict:
    reply = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    reply.raise_for_status()
    body = reply.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.mark.timeout(1200)
def test_materialize_all_through_graphql_completes(tmp_path: Path):
    lake_root, home = tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    lake = Lake(str(lake_root))
    site_port, ui_port = free_port(), free_port()
    web = prepare_sample_web(
        lake, lake_root / "sample_web", ORIGIN, seed=7, n_shards=2, pages_per_shard=5, slow_links=0
    )
    keys, _ = sync(lake, set())
    instance = DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions(shards.name, keys)
    env = {
        **os.environ,
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": str(lake_root),
        "CLIPFOUNDRY_SAMPLE_WEB_PORT": str(site_port),
        "CLIPFOUNDRY_AUTOMATION": "off",
        "DAGSTER_HOME": str(home),
    }
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO / "workspace.yaml")
    logs = {"webserver": tmp_path / "webserver.log", "daemon": tmp_path / "daemon.log"}
    procs = []
    with serve(web.site_dir, port=site_port):
        try:
            procs.append(
                start(
                    [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(ui_port), "-w", workspace],
                    logs["webserver"],
                    env=env,
                    cwd=REPO,
                )
            )
            procs.append(start([str(bin_dir / "dagster-daemon"), "run", "-w", workspace], logs["daemon"], env, REPO))
            url = f"http://127.0.0.1:{ui_port}"
            wait_server(procs[0], url + "/server_info", logs["webserver"], timeout=180)
            every = [{"path": [name]} for name in graph.stages()]
            launched = _query(
                url,
                """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
                     __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
                p={"assetSelection": every, "allPartitions": True, "title": "Materialize all"},
            )["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched

            def finished() -> str | None:
                status = _query(
                    url,
                    """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                         ... on PartitionBackfill { status } } }""",
                    id=launched["backfillId"],
                )["partitionBackfillOrError"]["status"]
                return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None

            status = wait_for(finished, 1000, interval=5, what="the Materialize-all backfill")
            assert status == "COMPLETED_SUCCESS", logs["daemon"].read_text()[-4000:]
        finally:
            for proc in procs:
                stop(proc)

    for name, stage in graph.stages().items():
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(name)), limit=100).records
        if stage.per_shard:
            assert sorted(r.partition_key for r in records) == sorted(keys), name
        else:
            assert len(records) == 1, name
