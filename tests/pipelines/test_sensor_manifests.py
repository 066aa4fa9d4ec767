"""The new-sources sensor with a Common Crawl manifest: every line a partition, appended lines new partitions, and
unusable lines reported on the tick, with no change to the sensor (it runs ``ops.sources.sync``)."""

from __future__ import annotations

import gzip

from dagster import DagsterInstance, SensorResult, build_sensor_context

from infra.resources import LakeResource
from pipelines.partitions import shards
from pipelines.sensors import new_sources_sensor_for

SENSOR = new_sources_sensor_for(30)


def _write(store, lines: list[str]) -> None:
    store.write_bytes("sources/cc/warc.paths.gz", gzip.compress("\n".join(lines).encode()))


def test_manifest_lines_become_partitions_and_appended_lines_join(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    store = lake.lake()
    lines = [f"crawl-data/C/segments/{i}/warc/C-{i:05d}.warc.gz" for i in range(1_000)]
    _write(store, [*lines, "crawl-data/C/segments/x/warc/C-x.warc.wet.gz"])
    with DagsterInstance.ephemeral() as instance:
        first = SENSOR(build_sensor_context(instance=instance, resources={"lake": lake}))
        assert isinstance(first, SensorResult)
        [request] = first.dynamic_partitions_requests
        assert len(request.partition_keys) == 1_000 and request.partition_keys[0] == "cc.warc.C-00000"
        [observation] = first.asset_events
        assert "1 line(s) of manifest 'sources/cc/warc.paths.gz' cannot be shards" in str(observation.metadata)
        instance.add_dynamic_partitions(shards.name, list(request.partition_keys))

        _write(store, [*lines, "crawl-data/C/segments/y/warc/C-01000.warc.gz"])
        second = SENSOR(build_sensor_context(instance=instance, resources={"lake": lake}, cursor=first.cursor))
        assert list(second.dynamic_partitions_requests[0].partition_keys) == ["cc.warc.C-01000"]
