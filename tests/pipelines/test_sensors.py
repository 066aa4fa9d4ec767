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

        again = new_sources_sensor(build_sensor_context(instance=instance, resources={"lake": lake}))
        assert isinstance(again, SkipReason)

        store.write_bytes("sources/cc/c.warc.gz", b"x")
        third = new_sources_sensor(build_sensor_context(instance=instance, resources={"lake": lake}))
        assert [r.partition_key for r in third.run_requests] == ["cc.c"]
