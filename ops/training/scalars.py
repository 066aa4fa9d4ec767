"""Exact per-step training metrics from open_clip_train, as JSON lines.

open_clip_train reports metrics to wandb or tensorboard only; its text log rounds the learning rate to six
decimals. Our entry point hands it :class:`JsonlSummaryWriter` in place of tensorboard's writer, so every logged
step's loss, learning rate and throughput land, unrounded and keyed by global step, in ``scalars.jsonl``. Only
rank 0 builds a writer in open_clip_train, so only rank 0 reports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILENAME = "scalars.jsonl"


class JsonlSummaryWriter:
    """The part of ``torch.utils.tensorboard.SummaryWriter`` open_clip_train calls, writing JSON lines."""

    def __init__(self, log_dir: str) -> None:
        os.makedirs(log_dir, exist_ok=True)
        self._file = open(Path(log_dir) / FILENAME, "a", buffering=1)  # noqa: SIM115 (lives as long as training)

    def add_scalar(self, tag: str, value: Any, step: int | None = None) -> None:
        self._file.write(json.dumps({"step": step, "tag": tag, "value": float(value)}) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class JsonlBoard:
    """Stands in for the ``torch.utils.tensorboard`` module inside ``open_clip_train.main``."""

    SummaryWriter = JsonlSummaryWriter


def read_steps(path: str | Path) -> list[dict[str, float]]:
    """One record per training step (``step``, ``loss``, ``lr``, ...), in step order.

    A step seen twice (an epoch redone after resuming from its start) keeps its latest values; a line cut off
    by a crash is ignored.
    """
    steps: dict[int, dict[str, float]] = {}
    path = Path(path)
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("step") is None or not rec["tag"].startswith("train/"):
            continue
        step = int(rec["step"])
        steps.setdefault(step, {"step": step})[rec["tag"][len("train/") :]] = rec["value"]
    return [steps[s] for s in sorted(steps)]
