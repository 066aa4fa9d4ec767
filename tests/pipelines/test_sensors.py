"""The new-sources sensor registers files as partitions (and says which it refuses); the refresh sensor submits one
backfill of the whole graph per cron tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import (
    AssetKey,
    AssetObservation,
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from infra.resources import LakeResource
from ops import graph
from ops.sources import registry
from pipelines.definitions import defs
from pipelines.partitions import shards
from pipelines.sensors import REFRESH_CRON, REFRESH_TAG, new_sources_sensor_for, refresh_sensor

SENSOR = new_sources_sensor_for(30)


def _tick(instance: DagsterInstance, lake: LakeResource, cursor: str | None = None):
    return SENSOR(build_sensor_context(instance=instance, resources={"lake": lake}, cursor=cursor))


def test_new_files_become_partitions_the_automation_then_runs(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    store = lake.lake()
    store.write_bytes("sources/cc/a.warc.gz", b"x")
    store.write_bytes("sources/cc/b.wat.gz", b"x")
    store.write_bytes("sources/cc/readme.txt", b"x")
    with DagsterInstance.ephemeral() as instance:
        result = _tick(instance, lake)
        assert isinstance(result, SensorResult)
        assert not result.run_requests  # runs are the automation sensor's business
        [request] = result.dynamic_partitions_requests
        assert list(request.partition_keys) == ["cc.a", "cc.b"]
        assert registry(store)["cc.a"]["path"] == "sources/cc/a.warc.gz"
        instance.add_dynamic_partitions(shards.name, list(request.partition_keys))
        assert isinstance(_tick(instance, lake, result.cursor), SkipReason)

        store.write_bytes("sources/cc/c.warc.gz", b"x")
        third = _tick(instance, lake, result.cursor)
        assert list(third.dynamic_partitions_requests[0].partition_keys) == ["cc.c"]


def test_a_deleted_partition_is_registered_again_while_its_file_exists(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    lake.lake().write_bytes("sources/cc/a.warc.gz", b"x")
    with DagsterInstance.ephemeral() as instance:
        first = _tick(instance, lake)
        instance.add_dynamic_partitions(shards.name, ["cc.a"])
        instance.delete_dynamic_partition(shards.name, "cc.a")
        again = _tick(instance, lake, first.cursor)
        assert list(again.dynamic_partitions_requests[0].partition_keys) == ["cc.a"]


def test_files_that_cannot_be_shards_are_reported_on_the_crawl_asset_once(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    store = lake.lake()
    store.write_bytes("sources/web/Shop Page.warc.gz", b"x")
    with DagsterInstance.ephemeral() as instance:
        first = _tick(instance, lake)
        instance.add_dynamic_partitions(shards.name, ["web.Shop_Page"])
        store.write_bytes("sources/web/shop_page.warc.gz", b"y")  # folds onto the registered key
        store.write_bytes("sources/----.warc.gz", b"z")  # no key at all
        second = _tick(instance, lake, first.cursor)
        assert isinstance(second, SensorResult) and not second.dynamic_partitions_requests
        [observation] = second.asset_events
        assert isinstance(observation, AssetObservation) and observation.asset_key == AssetKey("crawl")
        reported = observation.metadata["unusable_sources"].value
        assert any("shop_page.warc.gz" in m and "Shop Page.warc.gz" in m for m in reported)
        assert any("----" in m for m in reported)
        assert registry(store)["web.Shop_Page"]["path"] == "sources/web/Shop Page.warc.gz"
        third = _tick(instance, lake, second.cursor)
        assert isinstance(third, SkipReason) and "refused" in third.skip_message


def test_refresh_arms_on_first_tick_then_submits_one_whole_graph_backfill(tmp_path):
    repo = defs.get_repository_def()
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        instance.add_dynamic_partitions(shards.name, ["s0", "s1"])
        first = refresh_sensor(build_sensor_context(instance=instance, repository_def=repo))
        assert isinstance(first, SkipReason) and "armed" in first.skip_message
        previous_tick = (datetime.now(UTC) - timedelta(days=8)).isoformat()
        request = refresh_sensor(build_sensor_context(instance=instance, repository_def=repo, cursor=previous_tick))
        assert isinstance(request, RunRequest) and REFRESH_TAG in request.tags
        subset = request.asset_graph_subset
        for stage in graph.stages().values():
            key = AssetKey(stage.name)
            if stage.per_shard:
                assert set(subset.get_partitions_subset(key).get_partition_keys()) == {"s0", "s1"}
            else:
                assert key in subset.non_partitioned_asset_keys
        assert REFRESH_CRON
