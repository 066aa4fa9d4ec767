"""Run a training under torchrun and follow it: per-step metrics as they are written, the result at the end.

Each rank runs :mod:`ops.training.entry`; rank 0 alone writes ``scalars.jsonl``, which this process tails, so
a caller (the Dagster asset through Pipes, a benchmark, a test) sees every step once, from one place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ops.training.config import TrainConfig, check_architecture, check_shards, entry_args, torchrun
from ops.training.scalars import FILENAME, read_steps


class TrainingError(RuntimeError):
    """torchrun exited non-zero; the message carries the end of its output."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: list[dict[str, float]]  # step, loss, lr, samples_per_second, ...
    checkpoint: Path | None
    epoch: int  # epochs completed, from the newest checkpoint
    seconds: float


def scalars_path(config: TrainConfig) -> Path:
    return config.run_dir / "tensorboard" / FILENAME


def latest_checkpoint(run_dir: str | Path) -> tuple[Path | None, int]:
    """The newest ``epoch_<n>.pt`` of a run and its ``n`` (``(None, 0)`` before the first one)."""
    found = [
        (int(m.group(1)), p) for p in Path(run_dir, "checkpoints").glob("epoch_*.pt") if (m := _EPOCH.match(p.name))
    ]
    if not found:
        return None, 0
    n, path = max(found)
    return path, n


_EPOCH = re.compile(r"^epoch_(\d+)\.pt$")


class _Follower:
    """Reads new complete lines of ``scalars.jsonl`` and hands on each step once all its values are in."""

    def __init__(self, path: Path, on_step: Callable[[dict[str, float]], None]) -> None:
        self._path, self._on_step = path, on_step
        self._offset = 0
        self._pending: dict[str, float] | None = None

    def poll(self, final: bool = False) -> None:
        if self._path.exists():
            with self._path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            self._offset += end
            for line in data[:end].decode().splitlines():
                rec = json.loads(line)
                if rec.get("step") is None or not rec["tag"].startswith("train/"):
                    continue
                if self._pending is not None and self._pending["step"] != rec["step"]:
                    self._on_step(self._pending)
                    self._pending = None
                if self._pending is None:
                    self._pending = {"step": rec["step"]}
                self._pending[rec["tag"][len("train/") :]] = rec["value"]
        if final and self._pending is not None:
            self._on_step(self._pending)
            self._pending = None


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM torchrun (it stops its ranks), then SIGKILL its whole process group if anything is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=grace)


def train(
    config: TrainConfig,
    on_step: Callable[[dict[str, float]], None] | None = None,
    poll_seconds: float = 1.0,
    env: dict[str, str] | None = None,
) -> TrainResult:
    """Launch ``torchrun -m ops.training.entry`` and wait; resumes if the run folder has checkpoints."""
    check_architecture(config)
    check_shards(config)
    config.run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = torchrun("ops.training.entry", entry_args(config), config.nproc_per_node)
    follower = _Follower(scalars_path(config), on_step) if on_step else None
    output = config.run_dir.parent / f"{config.name}.torchrun.log"
    start = time.perf_counter()
    with output.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
        try:
            while proc.poll() is None:
                time.sleep(poll_seconds)
                if follower:
                    follower.poll()
        except BaseException:  # cancelled (Dagster interrupts the step): do not leave the ranks running
            _stop_group(proc)
            raise
    if follower:
        follower.poll(final=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = output.read_text(errors="replace")[-4000:]
        raise TrainingError(f"torchrun exited with {proc.returncode}; end of {output}:\n{tail}")
    checkpoint, epoch = latest_checkpoint(config.run_dir)
    return TrainResult(config.run_dir, read_steps(scalars_path(config)), checkpoint, epoch, seconds)
