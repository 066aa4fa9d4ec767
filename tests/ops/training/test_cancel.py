"""A cancelled training run leaves nothing running: SIGTERM to the process supervising torchrun (what Dagster's Pipes
client sends when the run is cancelled) stops torchrun and both of its ranks."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict

import numpy as np
import psutil
from PIL import Image

from ops.training import TrainConfig
from tests.conftest import REPO
from tests.ops.training.tiny import TINY_CONFIG, TINY_MODEL

CHILD = """
import json, sys
from infra.launchers.train_pipes import exit_on_sigterm
from ops.training import TrainConfig, train
exit_on_sigterm()
train(TrainConfig(**json.load(open(sys.argv[1]))), poll_seconds=0.2)
"""


def _shard(path, start: int, n: int) -> None:
    rng = np.random.default_rng(start)
    with tarfile.open(path, "w") as tar:
        for i in range(start, start + n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
            for ext, data in (("jpg", buf.getvalue()), ("txt", f"a sample {i}".encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_sigterm_stops_torchrun_and_its_ranks(tmp_path):
    for s in range(2):
        _shard(tmp_path / f"{s:05d}.tar", 100 * s, 32)
    config = TrainConfig(
        train_data=str(tmp_path / "{00000..00001}.tar"),
        train_num_samples=64,
        logs=str(tmp_path / "logs"),
        name="cancelled",
        model=TINY_MODEL,
        model_config=TINY_CONFIG,
        batch_size=8,
        epochs=1000,
        workers=0,
        precision="fp32",
        nproc_per_node=2,
        device="cpu",
        extra_args=("--dataset-resampled",),
    )
    (tmp_path / "config.json").write_text(json.dumps(asdict(config)))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "config.json")], cwd=REPO)
    try:
        supervisor = psutil.Process(child.pid)
        deadline = time.monotonic() + 180
        while len(supervisor.children(recursive=True)) < 3:  # torchrun and two ranks
            assert child.poll() is None, "training ended before it could be cancelled"
            assert time.monotonic() < deadline, "torchrun's ranks never started"
            time.sleep(0.5)
        everything = supervisor.children(recursive=True)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) != 0
        _, alive = psutil.wait_procs(everything, timeout=30)
        assert not alive, [p.cmdline()[:3] for p in alive]
    finally:
        if child.poll() is None:
            child.kill()
