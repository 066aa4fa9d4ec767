"""quality and recaption: pipeline overhead around the model, on CPU, with a small random Qwen2-VL.

The VLM stages are only worth running if nearly all their time is spent in the model: reading the shard's
tables, streaming and decoding the tar, building prompts, checkpointing each batch and writing the ledger must
be small beside ``generate``. The backend times its ``generate`` / forward calls (``model_seconds``); the stage's
report times the whole op; the overhead is the difference as a fraction of the stage's time (goal < 10%).
Preprocessing by the HF processor (resize, patchify, tokenise) counts as overhead here: it is CPU work around the
model that a faster pipeline could hide. The model is small but shaped like the real one (Qwen2-VL, 4 text
layers, 2 vision blocks, 112×112-pixel budget), so the shares are those of a slow model, the honest case for
the denominator, not of a 2B model on a GPU (see ``bench/gpu_vlm.py``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from infra.lake import Lake
from ops.quality import JudgeConfig, QualityConfig, quality_shard
from ops.quality.config import HeuristicRules
from ops.recaption import RecaptionConfig, recaption_shard
from ops.report import StageReport
from ops.vlm import VlmConfig, load_backend
from tests.ops.lakes import Settings
from tests.ops.quality.shards import many, write_shards
from tests.ops.vlm.tiny import build_qwen2_vl

NO_HEURISTICS = HeuristicRules(preset="none")
# Recaption is measured first: the judge runs rewrite quality's table, and a random judge keeps nothing.
MEASURE_ORDER = ("recaption", "judge (generate)", "judge (logits)")

SMALL_TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4}
SMALL_VISION = {"depth": 2, "embed_dim": 64, "num_heads": 4}


def _stage(run_once, backend) -> dict[str, float]:
    before = backend.model_seconds
    report: StageReport = run_once()
    model = backend.model_seconds - before
    return {
        "rows": report.rows_in,
        "stage_s": report.seconds,
        "model_s": model,
        "overhead": 1.0 - model / report.seconds,
        "rows_per_s": report.rows_in / report.seconds,
    }


def run(samples: int = 32, batch_size: int = 8, max_new_tokens: int = 16, repeats: int = 1) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_qwen2_vl(work / "model", text=SMALL_TEXT, vision=SMALL_VISION, max_pixels=112 * 112)
        backend = load_backend(VlmConfig(model=str(model_dir), name="small-random-qwen2-vl"))
        lake = Lake(str(work / "lake"))
        # every stage before recaption run by its op, keeping every sample (no heuristics, no judge yet)
        small = [replace(s, width=40, height=30) for s in many(samples)]
        write_shards(lake, {"bench": small}, "safety", Settings(quality=QualityConfig(heuristics=NO_HEURISTICS)))
        judge_config = QualityConfig(
            heuristics=NO_HEURISTICS, judge=JudgeConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
        )
        logit_config = QualityConfig(heuristics=NO_HEURISTICS, judge=JudgeConfig(mode="logits", batch_size=batch_size))
        caption_config = RecaptionConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
        runs = {
            "judge (generate)": lambda: quality_shard(lake, "bench", judge_config, judge=backend),
            "judge (logits)": lambda: quality_shard(lake, "bench", logit_config, judge=backend),
            "recaption": lambda: recaption_shard(lake, "bench", caption_config, backend),
        }
        result: dict = {"samples": samples, "batch_size": batch_size, "max_new_tokens": max_new_tokens}
        for name in MEASURE_ORDER:
            fn = runs[name]
            fn()  # warm-up: first-call allocations and lazy imports
            measured = [_stage(fn, backend) for _ in range(repeats)]
            result[name] = sorted(measured, key=lambda m: m["stage_s"])[len(measured) // 2]
    lines = [
        f"{samples} samples (smooth random-pattern JPEGs, 40×30 px) in one shard, batch {batch_size}, "
        f"{max_new_tokens} new tokens, small random Qwen2-VL on CPU, median of {repeats} run(s) after a warm-up.",
        "",
        "| stage | samples/s | stage s | in model s | overhead (outside the model) |",
        "|---|---|---|---|---|",
    ]
    for name in runs:
        m = result[name]
        lines.append(
            f"| {name} | {m['rows_per_s']:.1f} | {m['stage_s']:.2f} | {m['model_s']:.2f} | {m['overhead']:.1%} |"
        )
    result["markdown"] = "\n".join(lines)
    return result


if __name__ == "__main__":
    print(run()["markdown"])
