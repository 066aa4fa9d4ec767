"""scale: the global steps at growing sizes on synthetic lakes of realistic shape, time and peak memory.

Each measurement runs the project's own op (``build_index``, ``count_entries``, ``clip_threshold``,
``write_dataset``) in a fresh child process, so peak memory is that step's alone (the child's maximum resident
set, its idle interpreter with the imports measured beside it), and a watchdog kills a child that grows past
``CLIPFOUNDRY_SCALE_MEMORY_GB`` (default 12 of this machine's 24 GiB, which other jobs share): a killed size is
reported as beyond the limit, not retried. The data (:mod:`bench.scale_data`) is generated once per kind at the
largest size, in shards; smaller sizes take the first shards.

Sizes: ``CLIPFOUNDRY_SCALE=default`` (what ``make bench`` runs, a few minutes) or ``full`` (the curves of
docs/scale.md: hours on a shared 2-core machine); ``CLIPFOUNDRY_SCALE_STEPS=entry_counts,clip_threshold`` runs
some steps only. ``CLIPFOUNDRY_SCALE_DIR`` holds the generated lakes (default: the temp dir).
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.compute as pc

from bench.common import OUT, REPO
from bench.scale_data import ENTRIES, build
from infra.lake import Lake
from ops import graph
from ops.curation.stage import count_entries
from ops.dataset.writer import DatasetConfig, write_dataset
from ops.dedup import DedupConfig, build_index
from ops.quality.clip_score import clip_threshold

PROFILES = {
    "default": {
        "dedup_diverse": (30_000, 100_000),
        "dedup_products": (1_000, 3_000),
        "entry_counts": (1_000_000, 3_000_000),
        "clip_threshold": (1_000_000, 3_000_000),
        "dataset": (5_000, 10_000),
    },
    "full": {
        "dedup_diverse": (100_000, 300_000, 1_000_000),
        "dedup_products": (3_000, 10_000, 30_000),
        "entry_counts": (10_000_000, 30_000_000, 100_000_000),
        "clip_threshold": (10_000_000, 30_000_000, 100_000_000),
        "dataset": (10_000, 30_000, 100_000),
    },
}
# step -> (data kind, samples per shard)
DATA = {
    "dedup_diverse": ("diverse", 100_000),
    "dedup_products": ("products", 10_000),
    "entry_counts": ("matches", 100_000),
    "clip_threshold": ("scores", 100_000),
    "dataset": ("download", 10_000),
}
TOP_FRACTION = 0.3


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _child_main(task: str, args: dict) -> dict:
    """Runs in the child: build data, or run one step over the first ``shards`` and measure it (after the
    imports, which the idle figure includes)."""
    if task == "build":
        start = time.perf_counter()
        shards = build(args["root"], args["kind"], args["total"], args["per_shard"])
        return {"shards": shards, "seconds": time.perf_counter() - start}
    lake = Lake(args["root"])
    shards = args["shards"]
    idle_gb = psutil.Process().memory_info().rss / 2**30
    start, cpu = time.perf_counter(), time.process_time()
    out = STEPS[task](lake, shards)
    out.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
    out.update(peak_gb=_peak_rss_gb(), idle_gb=idle_gb)
    return out


def _dedup(lake: Lake, shards: list[str]) -> dict:
    report = build_index(lake, shards, DedupConfig())
    keep = {k: v for k, v in report.extra.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {"items": report.rows_in, "kept": report.rows_kept, "index": keep}


def _entry_counts(lake: Lake, shards: list[str]) -> dict:
    report = count_entries(lake, [f"entry {i}" for i in range(ENTRIES)], shards)
    return {"items": report.rows_in, "matches": report.extra["matches"]}


def _clip_threshold(lake: Lake, shards: list[str]) -> dict:
    result = clip_threshold(lake, shards, TOP_FRACTION)
    return {"items": result.scores, "threshold": result.threshold}


def _clip_threshold_sorted(lake: Lake, shards: list[str]) -> dict:
    """The reference: every kept score in one array, sorted (what ``clip_threshold`` did before)."""
    parts = []
    for shard in shards:
        table = lake.read_parquet(graph.stage("clip_scores").table(shard), columns=["clip_score", "kept"])
        parts.append(table.filter(pc.field("kept"))["clip_score"].to_numpy())
    values = np.sort(np.concatenate(parts))[::-1]
    return {"items": len(values), "threshold": float(values[min(int(len(values) * TOP_FRACTION), len(values) - 1)])}


def _dataset(lake: Lake, shards: list[str]) -> dict:
    result = write_dataset(lake, shards, DatasetConfig(through="download"))
    written = sum(entry["bytes"] for entry in result.manifest["shards"])
    return {"items": result.report.rows_kept, "bytes": written}


STEPS = {
    "dedup_diverse": _dedup,
    "dedup_products": _dedup,
    "entry_counts": _entry_counts,
    "clip_threshold": _clip_threshold,
    "clip_threshold_sorted": _clip_threshold_sorted,
    "dataset": _dataset,
}


def _run_child(task: str, args: dict, limit_gb: float) -> dict:
    """Run ``task`` in a child process; kill it when its resident memory passes ``limit_gb``."""
    cmd = [sys.executable, "-m", "bench.scale", "child", task, json.dumps(args)]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
        child = psutil.Process(proc.pid)
        peak = 0.0
        while proc.poll() is None:
            try:
                peak = max(peak, child.memory_info().rss / 2**30)
            except psutil.NoSuchProcess:
                break
            if peak > limit_gb:
                proc.kill()
                proc.wait()
                return {"failed": f"killed past {limit_gb:g} GB of memory", "peak_gb": peak}
            time.sleep(0.2)
        out.seek(0)
        lines = out.read().strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"failed": (lines or ["no output"])[-1][:300], "peak_gb": peak}
    return json.loads(lines[-1])


def run() -> dict:
    profile = os.environ.get("CLIPFOUNDRY_SCALE", "default")
    sizes = PROFILES[profile]
    chosen = [s for s in os.environ.get("CLIPFOUNDRY_SCALE_STEPS", "").split(",") if s]
    unknown = sorted(set(chosen) - set(sizes))
    if unknown:
        raise ValueError(f"CLIPFOUNDRY_SCALE_STEPS: no steps {unknown}; choose from {sorted(sizes)}")
    sizes = {step: step_sizes for step, step_sizes in sizes.items() if not chosen or step in chosen}
    limit_gb = float(os.environ.get("CLIPFOUNDRY_SCALE_MEMORY_GB", "12"))
    scratch = Path(os.environ.get("CLIPFOUNDRY_SCALE_DIR", tempfile.gettempdir())) / "clipfoundry-scale"
    result: dict = {"profile": profile, "memory_limit_gb": limit_gb, "steps": {}, "data": {}}
    try:
        for step, step_sizes in sizes.items():
            kind, most_per_shard = DATA[step]
            per_shard = min(most_per_shard, math.gcd(*step_sizes))  # every size a whole number of shards
            root = scratch / kind
            if root.exists():
                shutil.rmtree(root)
            built = _run_child(
                "build", {"root": str(root), "kind": kind, "total": max(step_sizes), "per_shard": per_shard}, limit_gb
            )
            result["data"][step] = {"seconds": built.get("seconds"), "bytes": _disk(root), "per_shard": per_shard}
            rows = []
            tasks = [step, "clip_threshold_sorted"] if step == "clip_threshold" else [step]
            for size in step_sizes:
                shards = built["shards"][: -(-size // per_shard)]
                for task in tasks:
                    row = _run_child(task, {"root": str(root), "shards": shards}, limit_gb)
                    rows.append({"task": task, "size": size, **row})
                    print(step, task, size, {k: v for k, v in row.items() if k != "index"}, flush=True)
            result["steps"][step] = rows
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["markdown"] = _markdown(result)
    return result


def _disk(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _size(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def _markdown(result: dict) -> str:
    lines = [
        f"Profile `{result['profile']}` (`CLIPFOUNDRY_SCALE`), synthetic lakes of realistic shape "
        "(`bench/scale_data.py`), each step and size in a fresh child process on one core, stopped past "
        f"{result['memory_limit_gb']:g} GB. Peak: the child's maximum resident set; idle: the same child "
        "before the step (interpreter and imports). CPU time, because other jobs share the cores.",
        "",
        "| step | items | wall s | CPU s | CPU µs / item | peak GB | idle GB | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step, rows in result["steps"].items():
        for row in rows:
            name = "clip_threshold, sort-based reference" if row["task"] == "clip_threshold_sorted" else step
            if "failed" in row:
                peak = f"{row['peak_gb']:.1f}"
                lines.append(f"| {name} | {_size(row['size'])} | — | — | — | {peak} | — | {row['failed']} |")
                continue
            per_item = row["cpu_seconds"] / max(row["items"], 1) * 1e6
            lines.append(
                f"| {name} | {_size(row['size'])} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | {per_item:.2f} | "
                f"{row['peak_gb']:.2f} | {row['idle_gb']:.2f} | {_notes(step, row)} |"
            )
    data = ", ".join(
        f"{step} {d['bytes'] / 1e9:.2f} GB in {d['seconds'] or 0:.0f} s ({d['per_shard']:,} a shard)"
        for step, d in result["data"].items()
    )
    lines += ["", f"Generated data, at the largest size of each step: {data}."]
    return "\n".join(lines)


def _notes(step: str, row: dict) -> str:
    if step.startswith("dedup"):
        x = row["index"]
        phases = ("candidates_s", "details_s", "order_s", "check_s", "write_s")
        timing = ", ".join(f"{p.removesuffix('_s')} {x.get(p, 0):.0f} s" for p in phases)
        return (
            f"{row['items'] - row['kept']:,} duplicates; {x.get('checked_pairs', 0) / max(row['items'], 1):.2f} checks "
            f"and {(x.get('candidates_full', 0) + x.get('candidates_crop', 0)) / max(row['items'], 1):.1f} "
            f"candidates an image; {timing}"
        )
    if step == "entry_counts":
        return f"{row['matches'] / row['items']:.1f} matches a sample"
    if step == "clip_threshold":
        return f"threshold {row['threshold']:.6f}"
    if step == "dataset":
        return f"{row['items'] / row['seconds']:,.0f} samples/s, {row['bytes'] / row['seconds'] / 1e6:.1f} MB/s written"
    return ""


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(_child_main(sys.argv[2], json.loads(sys.argv[3]))))
    else:
        OUT.mkdir(parents=True, exist_ok=True)
        measured = run()
        (OUT / "scale.json").write_text(json.dumps(measured, indent=2, default=str))
        print(measured["markdown"])
