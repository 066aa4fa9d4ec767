"""training throughput: our wrapper (torchrun + ops.training.entry) against plain ``python -m open_clip_train.main``.

Both train the same model at the same batch size on the same dataset shards, one after the other in one process
tree, with the same open_clip_train arguments (ours adds only its metrics writer, and in a third run caption
mixing and online curation). Throughput is open_clip_train's own per-step figure from ``out.log`` (samples per
second of each logged step), summed harmonically over the steps after warm-up: total samples / total step time.
Wall time includes start-up (torchrun, imports, model build) and is shown beside it.

``run()`` is the CPU benchmark (a small ViT on 32 px images); ``run_gpu()`` is the GPU one (ViT-B/32, bf16,
batch 256, 224 px JPEGs, 8 loader workers) for ``python -m bench.training --gpu`` on a machine with a GPU.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ops.dataset.tars import TarWriter
from ops.training import TrainConfig, brace_pattern, open_clip_args, train

SMALL_MODEL = "cf-bench-small"
SMALL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_STEP = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/(\d+).*?Batch \(t\): [\d.]+, ([\d.e+]+)/s")
_WORDS = ["red", "green", "blue", "yellow", "round", "square", "small", "large", "striped", "plain"]


def write_shards(folder: Path, n_samples: int, n_shards: int, size: int, seed: int = 0) -> list[str]:
    """Dataset-format shards (uid keys, raw + synthetic caption, json with p_keep) of noisy colour images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    per = -(-n_samples // n_shards)
    for s in range(n_shards):
        w = TarWriter(folder / f"{s:05d}.tar")
        for i in range(s * per, min(n_samples, (s + 1) * per)):
            words = rng.choice(_WORDS, size=3, replace=False)
            base = np.array([30 + 20 * _WORDS.index(x) for x in words], dtype=np.float32)
            pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
            uid = f"{i:032x}"
            w.add(
                uid,
                {
                    "jpg": buf.getvalue(),
                    "txt": f"a {' '.join(words)} thing".encode(),
                    "syn.txt": f"a photo of a {words[0]} {words[1]} object".encode(),
                    "json": json.dumps({"uid": uid, "p_keep": float(rng.uniform(0.5, 1.0))}).encode(),
                },
            )
        w.close()
        paths.append(str(w.path))
    return paths


def steady_throughput(log: Path, skip: int) -> tuple[float, int]:
    """(samples/s over the logged steps after the first ``skip``, steps counted) from an ``out.log``."""
    rates = [float(m.group(4)) for m in _STEP.finditer(log.read_text())][skip:]
    if not rates:
        raise RuntimeError(f"no training steps logged in {log}")
    return len(rates) / sum(1 / r for r in rates), len(rates)


def _plain(config: TrainConfig, model_dir: Path) -> float:
    """``python -m open_clip_train.main`` as a user would run it (a custom config registered first, in-process)."""
    code = (
        "import sys, open_clip; open_clip.add_model_config(sys.argv[1]); "
        "from open_clip_train.main import main; sys.exit(main(sys.argv[2:]))"
    )
    args = open_clip_args(config)
    start = time.perf_counter()
    out = config.run_dir.parent / f"{config.name}.stdout.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        if config.model_config is not None:
            subprocess.run([sys.executable, "-c", code, str(model_dir), *args], check=True, stdout=f, stderr=f)
        else:
            subprocess.run([sys.executable, "-m", "open_clip_train.main", *args], check=True, stdout=f, stderr=f)
    return time.perf_counter() - start


def compare(work: Path, base: TrainConfig, skip: int, with_mixing: bool = True, rounds: int = 2) -> dict:
    """Train ``base`` plainly and through our wrapper, ``rounds`` times in alternating order (the machines are
    shared: interleaving spreads load changes over both); throughput per run, then the median per variant."""
    model_dir = work / "model"
    model_dir.mkdir(exist_ok=True)
    if base.model_config is not None:
        (model_dir / f"{base.model}.json").write_text(json.dumps(base.model_config))
    variants = [("plain", {}), ("ours", {})]
    if with_mixing:
        variants.append(("ours_mixing", {"synthetic_caption_prob": 0.5, "online_curation": True}))
    measured: dict[str, list[tuple[float, float, int]]] = {label: [] for label, _ in variants}
    for r in range(rounds):
        for label, changes in variants if r % 2 == 0 else variants[::-1]:
            config = TrainConfig(**{**base.__dict__, **changes, "name": f"{label}-{r}"})
            wall = _plain(config, model_dir) if label == "plain" else train(config, poll_seconds=0.5).seconds
            rate, steps = steady_throughput(config.run_dir / "out.log", skip)
            measured[label].append((rate, wall, steps))
    result: dict = {"rounds": rounds}
    for label, runs in measured.items():
        result[f"{label}_samples_per_s"] = float(np.median([m[0] for m in runs]))
        result[f"{label}_wall_s"] = float(np.median([m[1] for m in runs]))
        result[f"{label}_steps"] = runs[0][2]
        result[f"{label}_runs_samples_per_s"] = [round(m[0], 2) for m in runs]
    # Paired: each round's wrapper run against that round's plain run, so load that changes between rounds
    # (the machines are shared) cancels out of the ratio; the median of those is the headline figure.
    paired = [o[0] / p[0] for o, p in zip(measured["ours"], measured["plain"], strict=True)]
    result["paired_ratios"] = [round(x, 3) for x in paired]
    result["ratio"] = float(np.median(paired))
    result["ratio_of_medians"] = result["ours_samples_per_s"] / result["plain_samples_per_s"]
    result["ratio_wall"] = result["plain_wall_s"] / result["ours_wall_s"]
    if with_mixing:
        result["ratio_mixing"] = result["ours_mixing_samples_per_s"] / result["plain_samples_per_s"]
    return result


def _markdown(result: dict, setup: str) -> str:
    rows = [("plain `python -m open_clip_train.main`", "plain"), ("clipfoundry wrapper (torchrun + entry)", "ours")]
    if "ours_mixing_samples_per_s" in result:
        rows.append(("wrapper + caption mixing 0.5 + online curation", "ours_mixing"))
    lines = [
        setup,
        "",
        "| run | samples/s (median of runs) | each run | steps timed | wall s | vs plain |",
        "|---|---|---|---|---|---|",
    ]
    plain = result["plain_samples_per_s"]
    for name, key in rows:
        rate = result[f"{key}_samples_per_s"]
        runs = ", ".join(f"{x:,.1f}" for x in result[f"{key}_runs_samples_per_s"])
        lines.append(
            f"| {name} | {rate:,.1f} | {runs} | {result[f'{key}_steps']} | {result[f'{key}_wall_s']:.1f} "
            f"| {rate / plain:.3f} |"
        )
    lines += [
        "",
        f"Wrapper / plain, paired by round: {', '.join(f'{x:.3f}' for x in result['paired_ratios'])}; median "
        f"**{result['ratio']:.3f}** (goal ≥ 0.95); ratio of the medians {result['ratio_of_medians']:.3f}.",
    ]
    return "\n".join(lines)


def run(n_samples: int = 4096, batch_size: int = 64, epochs: int = 1, rounds: int = 5) -> dict:
    """CPU: the small ViT, one process, fp32, 1 loader worker, 4 shards."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = write_shards(work / "data", n_samples, 4, SMALL_CONFIG["vision_cfg"]["image_size"])
        base = TrainConfig(
            train_data=brace_pattern(shards),
            train_num_samples=n_samples,
            logs=str(work / "logs"),
            name="plain",
            model=SMALL_MODEL,
            model_config=SMALL_CONFIG,
            batch_size=batch_size,
            epochs=epochs,
            lr=1e-3,
            warmup=5,
            workers=1,
            precision="fp32",
            device="cpu",
        )
        result = compare(work, base, skip=3, rounds=rounds)
    setup = (
        f"CPU, {os.cpu_count()} cores (shared), one process: {SMALL_MODEL} (ViT 2×64 on 32 px, text 2×64), batch "
        f"{batch_size}, {n_samples} samples × {epochs} epoch in 4 shards, fp32, 1 loader worker, every step logged; "
        f"{rounds} alternating rounds, first 3 steps of each run not timed."
    )
    result["markdown"] = _markdown(result, setup) + (
        "\n\nCaption mixing and online curation do extra work per sample in the single loader worker (a caption "
        "choice, a p_keep draw), which shows on a model this small; they are options, outside the like-for-like "
        "comparison. The GPU comparison (ViT-B/32, bf16, batch 256) is `bench/gpu.sh`'s, run on a lent device "
        "machine and recorded here by hand; no device has been lent to this project's sessions yet."
    )
    return result


def _gpu_utilisation(stop: threading.Event, samples: list[float]) -> None:
    while not stop.wait(1.0):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 and out.stdout.strip():
            samples.append(float(out.stdout.split()[0]))


def run_gpu(n_samples: int = 60_000, batch_size: int = 256, workers: int = 8) -> dict:
    """GPU: ViT-B-32, amp_bf16, 224 px JPEGs in 32 shards, one epoch per run, plain vs ours, with utilisation."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = write_shards(work / "data", n_samples, 32, 224)
        base = TrainConfig(
            train_data=brace_pattern(shards),
            train_num_samples=n_samples,
            logs=str(work / "logs"),
            name="plain",
            model="ViT-B-32",
            batch_size=batch_size,
            epochs=1,
            lr=5e-4,
            warmup=50,
            workers=workers,
            precision="amp_bf16",
            device="cuda",
        )
        util: list[float] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_gpu_utilisation, args=(stop, util), daemon=True)
        watcher.start()
        try:
            result = compare(work, base, skip=20, with_mixing=False, rounds=1)
        finally:
            stop.set()
    result["gpu_utilisation_mean"] = float(np.mean(util)) if util else None
    setup = (
        f"GPU: ViT-B-32, amp_bf16, batch {batch_size}, {n_samples} samples (224 px JPEG) in 32 shards, "
        f"{workers} loader workers, one epoch per run; mean GPU utilisation over both runs "
        f"{result['gpu_utilisation_mean']}%."
    )
    result["markdown"] = _markdown(result, setup)
    return result


if __name__ == "__main__":
    print((run_gpu() if "--gpu" in sys.argv else run())["markdown"])
