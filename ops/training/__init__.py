"""training: open_clip_train under torchrun, with caption mixing, online curation and exact per-step metrics."""

from ops.training.checkpoint import load_trained
from ops.training.config import TrainConfig, brace_pattern, dataset_shards, entry_args, open_clip_args, torchrun
from ops.training.launch import TrainingError, TrainResult, latest_checkpoint, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "brace_pattern",
    "dataset_shards",
    "entry_args",
    "latest_checkpoint",
    "load_trained",
    "open_clip_args",
    "torchrun",
    "train",
]
