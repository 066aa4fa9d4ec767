"""The comparison users come for: the same model and settings trained on the raw pool and on the curated pool,
at equal samples seen, evaluated zero-shot on the sample web's held-out split.

Raw pool = every downloaded image with its alt text (the dataset written through ``download``); curated pool =
what dedup, MetaCLIP matching, quality, safety and recaption kept, balanced by MetaCLIP at the demo's t (the
dataset stage's defaults). Both datasets are written from the demo's lake (``make demo`` first, or this runs the
demo), shards are resampled so both runs see exactly ``samples × epochs`` samples, and each configuration is
trained with several seeds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO
from infra.lake import Lake
from ops import graph
from ops.dataset import DatasetConfig, write_dataset
from ops.evaluation import load_classification_set, zero_shot
from ops.sources import registry
from ops.stage import done_shards
from ops.training import TrainConfig, dataset_shards, load_trained, train
from pipelines.profiles import DEMO_MODEL, DEMO_MODEL_CONFIG, stage_settings

METRICS = ("top1", "top5", "mean_per_class_recall")


def _demo_lake() -> Lake:
    root = Path(os.environ.get("CLIPFOUNDRY_DATA_ROOT", REPO / "data"))
    lake = Lake(str(root))
    if not lake.exists("sample_web/eval/sample_web/classes.json") or not _curated_shards(lake):
        env = {**os.environ, "CLIPFOUNDRY_PROFILE": "demo", "CLIPFOUNDRY_DATA_ROOT": str(root)}
        subprocess.run([sys.executable, "-m", "pipelines.demo"], cwd=REPO, env=env, check=True)
    return lake


def _curated_shards(lake: Lake) -> list[str]:
    """The registered shards every stage has run for (the last flowing stage published them)."""
    return done_shards(lake, graph.last_flowing(), sorted(registry(lake)))


def _train_and_score(lake: Lake, version: str, samples: int, epochs: int, seed: int, logs: Path) -> dict[str, float]:
    pattern, _ = dataset_shards(lake, version)
    config = TrainConfig(
        train_data=pattern,
        train_num_samples=samples,
        logs=str(logs),
        name=f"{version[:12]}-seed{seed}",
        model=DEMO_MODEL,
        model_config=DEMO_MODEL_CONFIG,
        batch_size=64,
        epochs=epochs,
        lr=1e-3,
        warmup=10,
        workers=1,
        precision="fp32",
        seed=seed,
        extra_args=("--dataset-resampled",),
    )
    result = train(config)
    clip, preprocess, tokenizer = load_trained(result.checkpoint, DEMO_MODEL, DEMO_MODEL_CONFIG)
    scores = zero_shot(clip, tokenizer, preprocess, lake, load_classification_set(lake, "sample_web/eval/sample_web"))
    return {k: float(scores["metrics"][k]) for k in METRICS}


def run(samples: int = 1200, epochs: int = 4, seeds: tuple[int, ...] = (0, 1)) -> dict:
    lake = _demo_lake()
    shards = _curated_shards(lake)
    demo = stage_settings("demo")
    curated: DatasetConfig = demo["dataset_settings"]
    balance = demo["curation_settings"].balance
    pools = {
        "raw": (DatasetConfig(samples_per_shard=curated.samples_per_shard, through="download"), None),
        "curated": (curated, balance),
    }
    result: dict = {"samples_per_epoch": samples, "epochs": epochs, "seeds": list(seeds)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (config, balanced) in pools.items():
            written = write_dataset(lake, shards, config, balanced)
            if balanced is not None:
                result["t"] = written.report.extra["t"]  # what the balance settings gave over the current counts
            result[f"{name}_pool"] = int(written.manifest["samples"])
            runs = [_train_and_score(lake, written.version, samples, epochs, s, Path(tmp) / name) for s in seeds]
            result[name] = {k: statistics.mean(r[k] for r in runs) for k in METRICS}
            result[f"{name}_runs"] = runs
    lines = [
        f"Tiny CLIP ({DEMO_MODEL}, the demo's config), {samples} samples × {epochs} epochs seen by both (shards "
        f"resampled), mean of seeds {list(seeds)}; zero-shot on the sample web's held-out split (48 classes). "
        f"Raw pool: {result['raw_pool']} samples (crawl + download); curated pool: {result['curated_pool']} "
        f"(dedup, MetaCLIP matching and balancing at t = {result['t']:g}, quality, safety, recaption).",
        "",
        "| metric | raw pool | curated pool | difference |",
        "|---|---|---|---|",
    ]
    for k in METRICS:
        raw, cur = result["raw"][k], result["curated"][k]
        lines.append(f"| {k} | {raw:.3f} | {cur:.3f} | {cur - raw:+.3f} |")
    result["markdown"] = "\n".join(lines)
    return result


if __name__ == "__main__":
    print(run()["markdown"])
