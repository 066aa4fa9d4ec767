"""The new-sources sensor on an ``s3://`` lake: files dropped under ``sources/`` on a real S3-protocol server."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from infra.resources import LakeResource
from ops.sources import registry
from pipelines.partitions import shards
from pipelines.sensors import new_sources_sensor_for
from tests.integration.conftest import make_bucket

pytestmark = pytest.mark.integration


def test_sensor_lists_an_s3_prefix(s3_server, tmp_path):
    make_bucket(s3_server, "sensor-lake")
    lake = LakeResource(
        root="s3://sensor-lake/prod",
        s3_endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.key,
        aws_secret_access_key=s3_server.secret,
        aws_region="us-east-1",
    )
    store = lake.lake()
    store.write_bytes("sources/cc/CC-MAIN-1.warc.gz", b"x")
    store.write_bytes("sources/laion/part-0.parquet", b"x")
    store.write_bytes("sources/cc/notes.txt", b"x")
    with DagsterInstance.local_temp(str(tmp_path)) as instance:

        def tick():
            with build_sensor_context(instance=instance, resources={"lake": lake}) as context:
                return new_sources_sensor_for(30)(context)

        first = tick()
        assert isinstance(first, SensorResult)
        added = list(first.dynamic_partitions_requests[0].partition_keys)
        assert added == ["cc.CC-MAIN-1", "laion.part-0"]
        assert registry(store)["laion.part-0"]["path"] == "sources/laion/part-0.parquet"  # the registry is on S3 too
        instance.add_dynamic_partitions(shards.name, added)
        assert isinstance(tick(), SkipReason)

        store.write_bytes("sources/cc/CC-MAIN-2.warc.gz", b"x")
        third = tick()
        assert list(third.dynamic_partitions_requests[0].partition_keys) == ["cc.CC-MAIN-2"]
