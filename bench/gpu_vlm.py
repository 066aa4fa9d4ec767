"""VLM judge and captioner throughput on one GPU: a 2B-class Qwen2-VL, HF backend and vLLM backend side by side.

Random weights run exactly as fast as trained ones, so the checkpoint is Qwen2-VL-2B's architecture built from
its config (bf16), saved with a tokenizer trained offline and padded to the real vocabulary; nothing is
downloaded. Every answer has the same length (HF: ``min_new_tokens``; vLLM: ``ignore_eos``), because a random
model would otherwise stop at random points and flatter whichever backend stopped first. Images are 448×448
JPEGs read from a webdataset tar by the real ops (256 image tokens each under Qwen2-VL's 448² pixel budget),
so the figures are for the stage, not the bare model.

Run on a GPU machine: ``python -m bench.gpu_vlm`` (``--smoke`` runs a tiny model on CPU to check the script).
vLLM is optional; without it the vLLM rows say so. Goal from the issue: ≥ 100 images/s per GPU for the judge
with vLLM.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from infra.lake import Lake
from ops.quality import JudgeConfig, QualityConfig, quality_shard
from ops.quality.config import HeuristicRules
from ops.recaption import RecaptionConfig, recaption_shard
from ops.vlm import VlmConfig, load_backend
from tests.ops.lakes import Settings
from tests.ops.quality.shards import many, write_shards
from tests.ops.vlm.tiny import build_qwen2_vl

QWEN2_VL_2B_TEXT = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
QWEN2_VL_2B_VISION = {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4}
QWEN2_VL_VOCAB = 151936
PIXELS = 448 * 448
NO_HEURISTICS = HeuristicRules(preset="none")
# Recaption is measured first: the judge runs rewrite quality's table, and a random judge keeps nothing.
MEASURE_ORDER = ("recaption", "judge (generate)", "judge (logits)")


def _fixed_length(backend, max_new_tokens: int) -> None:
    """Make every answer exactly ``max_new_tokens`` long, whichever engine runs."""
    if hasattr(backend, "llm"):
        backend._sampling_params = partial(backend._sampling_params, ignore_eos=True)
    else:
        backend.model.generation_config.min_new_tokens = max_new_tokens


def _measure(backend, lake: Lake, judge_tokens: int, caption_tokens: int, batch: int) -> dict[str, float]:
    judge = QualityConfig(heuristics=NO_HEURISTICS, judge=JudgeConfig(max_new_tokens=judge_tokens, batch_size=batch))
    logits = QualityConfig(heuristics=NO_HEURISTICS, judge=JudgeConfig(mode="logits", batch_size=batch))
    caption = RecaptionConfig(max_new_tokens=caption_tokens, batch_size=batch)
    runs = {
        "judge (generate)": (lambda: quality_shard(lake, "bench", judge, judge=backend), judge_tokens),
        "judge (logits)": (lambda: quality_shard(lake, "bench", logits, judge=backend), None),
        "recaption": (lambda: recaption_shard(lake, "bench", caption, backend), caption_tokens),
    }
    out = {}
    for name in MEASURE_ORDER:
        fn, tokens = runs[name]
        if tokens:
            _fixed_length(backend, tokens)
        fn()  # warm-up: CUDA graphs, kernels, allocator
        before = backend.model_seconds
        report = fn()
        out[name] = {
            "images_per_s": report.rows_in / report.seconds,
            "model_share": (backend.model_seconds - before) / report.seconds,
        }
    return out


def run(
    images: int = 1024,
    hf_batch: int = 64,
    vllm_batch: int = 512,
    judge_tokens: int = 64,
    caption_tokens: int = 128,
    smoke: bool = False,
) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    if smoke:
        images, hf_batch, vllm_batch, judge_tokens, caption_tokens = 8, 4, 8, 4, 6
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        arch = {} if smoke else {"text": QWEN2_VL_2B_TEXT, "vision": QWEN2_VL_2B_VISION, "vocab_size": QWEN2_VL_VOCAB}
        model_dir = build_qwen2_vl(
            work / "qwen2-vl-2b-random", max_pixels=56 * 56 if smoke else PIXELS, dtype=torch.bfloat16, **arch
        )
        lake = Lake(str(work / "lake"))
        side = 64 if smoke else 448
        pool = [replace(s, width=side, height=side) for s in many(images)]
        # every stage before recaption run by its op, keeping every sample (no heuristics, no judge yet)
        write_shards(lake, {"bench": pool}, "safety", Settings(quality=QualityConfig(heuristics=NO_HEURISTICS)))
        result: dict = {
            "images": images,
            "judge_tokens": judge_tokens,
            "caption_tokens": caption_tokens,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        }
        hf = load_backend(VlmConfig(model=str(model_dir), backend="hf"))
        result["hf"] = _measure(hf, lake, judge_tokens, caption_tokens, hf_batch)
        del hf
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if importlib.util.find_spec("vllm") is None or smoke:
            result["vllm"] = "vllm not installed" if not smoke else "skipped in smoke mode"
        else:
            engine = {"load_format": "dummy", "max_model_len": 4096, "max_num_seqs": vllm_batch}
            vllm = load_backend(VlmConfig(model=str(model_dir), backend="vllm", engine_kwargs=engine))
            result["vllm"] = _measure(vllm, lake, judge_tokens, caption_tokens, vllm_batch)
    lines = [
        f"{images} JPEGs 448×448 (256 image tokens), Qwen2-VL-2B architecture with random bf16 weights, "
        f"on {result['device']}; judge {judge_tokens} and captions {caption_tokens} new tokens (fixed)."
        if not smoke
        else f"Smoke run: {images} images, tiny random Qwen2-VL on {result['device']}; figures mean nothing.",
        "",
        "| backend | stage | images/s | share of time in the model |",
        "|---|---|---|---|",
    ]
    for backend in ("hf", "vllm"):
        rows = result[backend]
        if isinstance(rows, str):
            lines.append(f"| {backend} | all | {rows} | |")
            continue
        for stage, m in rows.items():
            lines.append(f"| {backend} | {stage} | {m['images_per_s']:.1f} | {m['model_share']:.0%} |")
    result["markdown"] = "\n".join(lines)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, to check the script runs")
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args()
    print(run(images=args.images, smoke=args.smoke)["markdown"])
