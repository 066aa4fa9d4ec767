"""dataset: the final training shards (webdataset) with a content-derived version and a manifest."""

from ops.dataset.selection import STAGES, MissingStageError, present_stages
from ops.dataset.writer import DatasetConfig, DatasetResult, dataset_prefix, write_dataset

__all__ = [
    "STAGES",
    "DatasetConfig",
    "DatasetResult",
    "MissingStageError",
    "dataset_prefix",
    "present_stages",
    "write_dataset",
]
