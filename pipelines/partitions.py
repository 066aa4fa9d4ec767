"""The shard partitions: one dynamic partition per source file, added by the new-sources sensor."""

from dagster import DynamicPartitionsDefinition

shards = DynamicPartitionsDefinition(name="shards")
