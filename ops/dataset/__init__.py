"""dataset: the final training shards (webdataset) with a content-derived version and a manifest."""

from ops.dataset.writer import (
    DatasetConfig,
    DatasetResult,
    dataset_prefix,
    decisions_path,
    publish_dataset,
    write_dataset,
)

__all__ = [
    "DatasetConfig",
    "DatasetResult",
    "dataset_prefix",
    "decisions_path",
    "publish_dataset",
    "write_dataset",
]
