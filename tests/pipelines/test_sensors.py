"""The new-sources sensor registers unseen source files as partitions and requests one run each."""

from __future__ import annotations

from dagster import DagsterInstance, RunRequest, SensorResult, SkipReason, build_sensor_context

from infra.resources import LakeResource
from pipelines.partitions import shards
from pipelines.sensors import new_sources_sensor


def test_new_files_become_partitions_and_runs(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    store = lake.lake()
    store.write_bytes("sources/cc/a.warc.gz", b"x")
    store.write_bytes("sources/cc/b.wat.gz", b"x")
    store.write_bytes("sources/cc/readme.txt", b"x")
    with DagsterInstance.ephemeral() as instance:
        result = new_sources_sensor(build_sensor_context(instance=instance, resources={"lake": lake}))
        assert isinstance(result, SensorResult)
        assert [r.partition_key for r in result.run_requests] == ["cc.a", "cc.b"]
        assert all(isinstance(r, RunRequest) and r.run_key for r in result.run_requests)
        [request] = result.dynamic_partitions_requests
        assert list(request.partition_keys) == ["cc.a", "cc.b"]
        instance.add_dynamic_partitions(shards.name, list(request.partition_keys))

        assert [r.run_key for r in result.run_requests] == ["ingest:cc.a:1", "ingest:cc.b:1"]
        assert result.cursor == "1"

        again = new_sources_sensor(
            build_sensor_context(instance=instance, resources={"lake": lake}, cursor=result.cursor)
        )
        assert isinstance(again, SkipReason)

        store.write_bytes("sources/cc/c.warc.gz", b"x")
        third = new_sources_sensor(build_sensor_context(instance=instance, resources={"lake": lake}))
        assert [r.partition_key for r in third.run_requests] == ["cc.c"]


def test_a_deleted_and_re_added_partition_gets_a_new_ingest_run(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    lake.lake().write_bytes("sources/cc/a.warc.gz", b"x")
    with DagsterInstance.ephemeral() as instance:
        first = new_sources_sensor(build_sensor_context(instance=instance, resources={"lake": lake}))
        instance.add_dynamic_partitions(shards.name, ["cc.a"])
        retried = new_sources_sensor(build_sensor_context(instance=instance, resources={"lake": lake}))
        assert isinstance(retried, SkipReason)
        instance.delete_dynamic_partition(shards.name, "cc.a")
        second = new_sources_sensor(
            build_sensor_context(instance=instance, resources={"lake": lake}, cursor=first.cursor)
        )
        assert [r.run_key for r in first.run_requests] == ["ingest:cc.a:1"]
        assert [r.run_key for r in second.run_requests] == ["ingest:cc.a:2"]
        assert list(second.dynamic_partitions_requests[0].partition_keys) == ["cc.a"]
