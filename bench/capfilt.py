"""CapFilt on the hard sample web: what the pipeline's own round-0 CoCa is worth as judge, filter and captioner,
measured against the web's ground truth.

The hard web (``generate(mode="hard")``: about half the captions mismatched, generic or junk, small look-alike
product shots beside varied images) is served on 127.0.0.1 and run through the engine's own stage ops in the
declared graph's order (:func:`tests.ops.lakes.run`), with the demo's settings: crawl, download (img2dataset),
dedup, MetaCLIP curation and the heuristics make round 0; the demo's CoCa is trained on it by open_clip_train
(the bootstrap's path); then the CLIP score (its towers), the pair judge (similarity, caption likelihood) with
top fractions over all shards, the quality filter and recaption with it make round 1.

Measured with the ground truth (``caption_truth`` and ``concept`` per link):

- the filter: of the raw captions entering it, the share of mismatched, generic and junk ones it removes, of
  correct ones it keeps, and the precision of its drops, for each score alone and together at a few fractions
  (read off the score tables, no rerun);
- the captioner: how often its caption names the pictured concept, where the raw caption does and does not;
- zero-shot top-1/top-5 on the hard web's eval split of the demo's tiny CLIP trained at equal samples seen on
  the raw pool, round 0, round 0 with synthetic captions mixed in, round 1, and round 1 with the mix; mean and
  spread over the seeds;
- captioner and judge throughput on CPU, and the share of their stage time spent outside the model.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infra.lake import Lake
from infra.sample_web import ORIGIN, metadata_entries, serve
from ops import graph
from ops.bootstrap import BootstrapConfig
from ops.crawl.shard import CrawlConfig, crawl_shard
from ops.curation.config import BalanceConfig
from ops.dataset.writer import DatasetConfig, write_dataset
from ops.dedup import DedupConfig
from ops.download import download_shard
from ops.evaluation.config import EvaluationConfig
from ops.evaluation.suite import run_suite
from ops.quality.clip_score import ClipModelSpec, ClipScorer
from ops.quality.config import ClipScoreConfig, QualityConfig
from ops.quality.judge import PAIRS, JudgeConfig
from ops.quality.topfraction import top_fraction_threshold
from ops.recaption.shard import RecaptionConfig
from ops.report import StageReport
from ops.training import dataset_shards, load_trained, train
from ops.training.checkpoint import register_model_config
from ops.training.config import ModelConfig
from ops.vlm import VlmConfig, load_backend
from pipelines.demo import prepare_sample_web
from pipelines.profiles import DEMO_COCA, DEMO_COCA_CONFIG, DEMO_MODEL, DEMO_MODEL_CONFIG, stage_settings
from tests.ops.lakes import Settings
from tests.ops.lakes import run as run_stages

LOOPBACK = ("127.0.0.0/8",)
EVAL = "sample_web/eval/sample_web"
BAD = ("mismatched", "generic", "junk")
WORTHS = ("correct", *BAD)
POOLS = ("raw pool", "round 0", "round 0 + synthetic mix", "round 1 (filtered)", "round 1 + synthetic mix")
FRACTIONS = ((0.7, None), (0.8, None), (None, 0.7), (None, 0.8), (0.8, 0.8), (0.9, 0.9))


def ingest(work: Path, seed: int) -> tuple[Lake, list[str]]:
    """The hard web generated, served and crawled + downloaded (img2dataset) shard by shard."""
    lake = Lake(str(work / "lake"))
    site = Path(lake.path("sample_web")) / "site"
    site.mkdir(parents=True, exist_ok=True)
    shards = []
    with serve(site) as server:
        web = prepare_sample_web(lake, Path(lake.path("sample_web")), ORIGIN, seed, mode="hard", slow_links=0)
        download = replace(
            stage_settings("demo")["download_settings"], origin_overrides=(f"{ORIGIN}={server.url.rstrip('/')}",)
        )
        for warc in web.warc_paths:
            shard = f"sample_web.{warc.name.split('.')[0]}"
            crawl_shard(lake, f"sources/sample_web/{warc.name}", shard, CrawlConfig(allow_networks=LOOPBACK))
            download_shard(lake, shard, download)
            shards.append(shard)
    return lake, shards


def ground_truth(lake: Lake, shards: list[str]) -> dict[str, dict]:
    """uid → the ground-truth row of its link, joined on the crawl's URL and whitespace-collapsed caption."""
    rows = pq.read_table(lake.path("sample_web/ground_truth.parquet")).to_pylist()
    by_pair = {(r["url"], " ".join((r["caption"] or "").split())): r for r in rows}
    truth = {}
    for shard in shards:
        for c in lake.read_parquet(graph.stage("crawl").table(shard), ["uid", "url", "text"]).to_pylist():
            found = by_pair.get((c["url"], " ".join((c["text"] or "").split())))
            if found is not None:
                truth[c["uid"]] = found
    return truth


def kept(lake: Lake, stage: str, shards: list[str]) -> list[str]:
    return [
        uid
        for shard in shards
        for uid in lake.read_parquet(graph.stage(stage).table(shard), ["uid", "kept"])
        .filter(pc.field("kept"))["uid"]
        .to_pylist()
    ]


def train_model(lake: Lake, version: str, model: ModelConfig, samples: int, logs: Path, name: str) -> Path:
    """open_clip_train on a dataset version (the stages' own training path); the newest checkpoint."""
    pattern, _ = dataset_shards(lake, version)
    return train(model.train_config(pattern, samples, str(logs), name)).checkpoint


def zero_shot(lake: Lake, checkpoint: Path, architecture: str, config: dict) -> dict[str, float]:
    model, preprocess, tokenizer = load_trained(checkpoint, architecture, config)
    found = run_suite(model, tokenizer, preprocess, lake, EvaluationConfig(classification_sets=(EVAL,))).metrics
    return {k: found[f"eval/sample_web/{k}"] for k in ("top1", "top5")}


def filter_quality(lake: Lake, shards: list[str], truth: dict[str, dict]) -> list[dict]:
    """For each fraction of the sweep: what the CLIP score and/or caption likelihood would keep, by caption worth."""
    scores = {"clip": [], "likelihood": [], "worth": []}
    for shard in shards:
        clip = lake.read_parquet(graph.stage("clip_scores").table(shard), ["uid", "clip_score"]).to_pylist()
        judged = lake.read_parquet(graph.stage("judge_scores").table(shard), ["uid", "judge_likelihood"])
        likelihood = dict(zip(judged["uid"].to_pylist(), judged["judge_likelihood"].to_pylist(), strict=True))
        for row in clip:
            worth = (truth.get(row["uid"]) or {}).get("caption_truth")
            if row["clip_score"] is None or likelihood.get(row["uid"]) is None or worth not in WORTHS:
                continue
            scores["clip"].append(row["clip_score"])
            scores["likelihood"].append(likelihood[row["uid"]])
            scores["worth"].append(worth)
    values = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items() if k != "worth"}
    worth = np.asarray(scores["worth"])
    out = []
    for clip_fraction, likelihood_fraction in FRACTIONS:
        keep = np.ones(len(worth), dtype=bool)
        for name, fraction in (("clip", clip_fraction), ("likelihood", likelihood_fraction)):
            if fraction is not None:
                threshold, _ = top_fraction_threshold(lambda v=values[name]: [v], fraction)
                keep &= values[name] >= threshold
        bad = np.isin(worth, BAD)
        out.append(
            {
                "clip": clip_fraction,
                "likelihood": likelihood_fraction,
                "keeps_correct": float(keep[worth == "correct"].mean()),
                **{f"removes_{w}": float(1 - keep[worth == w].mean()) for w in BAD if (worth == w).any()},
                "drop_precision": float(bad[~keep].mean()) if (~keep).any() else float("nan"),
                "correct_share": [float((worth == "correct").mean()), float((worth[keep] == "correct").mean())],
            }
        )
    return out


def names_concept(text: str | None, concept: str | None) -> bool:
    return bool(text and concept and re.search(rf"\b{re.escape(concept.lower())}\b", text.lower()))


def captioner_quality(lake: Lake, shards: list[str], truth: dict[str, dict]) -> dict[str, list[int]]:
    """[names the concept, samples] for synthetic captions, split by whether the raw caption names it."""
    hits: dict[str, list[int]] = {}
    for shard in shards:
        for row in lake.read_parquet(graph.stage("recaption").table(shard), ["uid", "synthetic_text"]).to_pylist():
            t = truth.get(row["uid"])
            if t is None or not t["concept"]:
                continue
            group = "raw names it" if names_concept(t["caption"], t["concept"]) else "raw does not"
            counts = hits.setdefault(group, [0, 0])
            counts[0] += names_concept(row["synthetic_text"], t["concept"])
            counts[1] += 1
    return hits


def speed(reports: list[StageReport], label: str) -> dict[str, Any]:
    rows = sum(r.rows_in for r in reports)
    seconds = sum(r.seconds for r in reports)
    model = sum(float(r.extra.get("model_seconds", 0.0)) for r in reports)
    return {"stage": label, "samples": rows, "per_s": rows / seconds, "outside_model": 1 - model / seconds}


def run(
    samples: int = 1200, epochs: int = 4, seeds: tuple[int, ...] = (0, 1), mix: float = 0.3, web_seed: int = 0
) -> dict:
    demo = stage_settings("demo")
    boot: BootstrapConfig = demo["bootstrap_settings"]
    clip_model: ModelConfig = demo["model_settings"]
    clip_fraction = demo["quality_settings"].clip.top_fraction
    likelihood_fraction = demo["quality_settings"].judge.likelihood_top_fraction
    balance = BalanceConfig(t=50)
    result: dict[str, Any] = {"seconds": {}, "samples": samples, "epochs": epochs, "seeds": list(seeds), "mix": mix}
    with tempfile.TemporaryDirectory(prefix="clipfoundry-capfilt-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        lake, shards = ingest(work, web_seed)
        truth = ground_truth(lake, shards)
        base = Settings(dedup=DedupConfig(eval_sets=(EVAL,)), entries=metadata_entries(), quality=QualityConfig())
        run_stages(lake, shards, "heuristics", base)
        versions = {
            "raw pool": write_dataset(lake, shards, DatasetConfig(256, through="download")).version,
            "round 0": write_dataset(lake, shards, DatasetConfig(256, through="heuristics"), balance).version,
        }
        result["seconds"]["pipeline to round 0"] = time.perf_counter() - started

        started = time.perf_counter()
        round0 = len(kept(lake, "heuristics", shards))
        coca = train_model(lake, versions["round 0"], boot.training(), round0, work / "runs", "coca")
        result["seconds"]["CoCa training"] = time.perf_counter() - started
        result["coca_zero_shot"] = zero_shot(lake, coca, DEMO_COCA, DEMO_COCA_CONFIG)
        engine = {"architecture": DEMO_COCA, "architecture_config": DEMO_COCA_CONFIG}
        backend = load_backend(VlmConfig(model=str(coca), backend="coca", engine_kwargs=engine, name="coca@round0"))
        captioning = RecaptionConfig(model="coca@round0", backend="coca", max_new_tokens=15, batch_size=64)

        # round 0 captioned whole (no model filter), for the mix on round 0's own pool
        run_stages(lake, shards, "recaption", replace(base, recaption=captioning, captioner=backend), start="quality")
        versions["round 0 + synthetic mix"] = write_dataset(lake, shards, DatasetConfig(256), balance).version

        started = time.perf_counter()
        register_model_config(DEMO_COCA, DEMO_COCA_CONFIG)
        scorer = ClipScorer(ClipModelSpec(model=DEMO_COCA, pretrained=str(coca)))
        round1 = replace(
            base,
            scorer=scorer,
            judge=backend,
            captioner=backend,
            recaption=captioning,
            quality=QualityConfig(
                clip=ClipScoreConfig(model=DEMO_COCA, pretrained=str(coca), top_fraction=clip_fraction),
                judge=JudgeConfig(mode=PAIRS, likelihood_top_fraction=likelihood_fraction, batch_size=64),
            ),
        )
        reports: dict[str, list[StageReport]] = {}
        run_stages(lake, shards, "recaption", round1, start="clip_scores")
        for stage in ("judge_scores", "recaption"):
            reports[stage] = [StageReport.from_dict(lake.read_json(graph.stage(stage).report(s))) for s in shards]
        result["seconds"]["round 1 (scores, filter, captions)"] = time.perf_counter() - started
        versions["round 1 (filtered)"] = versions["round 1 + synthetic mix"] = write_dataset(
            lake, shards, DatasetConfig(256), balance
        ).version
        result["filter"] = filter_quality(lake, shards, truth)
        result["captioner"] = captioner_quality(lake, shards, truth)
        result["speed"] = [
            speed(reports["recaption"], "captioner (recaption)"),
            speed(reports["judge_scores"], "judge"),
        ]
        result["pool_worth"] = {
            name: dict(Counter((truth.get(u) or {}).get("caption_truth") or "none" for u in kept(lake, stage, shards)))
            for name, stage in (("raw pool", "download"), ("round 0", "heuristics"), ("round 1", "quality"))
        }

        started = time.perf_counter()
        scores: dict[str, dict] = {}
        for name in POOLS:
            prob = mix if "mix" in name else 0.0
            runs = []
            for seed in seeds:
                config = replace(clip_model, epochs=epochs, seed=seed, synthetic_caption_prob=prob)
                tag = f"{re.sub(r'[^a-z0-9]+', '-', name)}-{seed}"
                checkpoint = train_model(lake, versions[name], config, samples, work / "runs", tag)
                runs.append(zero_shot(lake, checkpoint, DEMO_MODEL, DEMO_MODEL_CONFIG))
            scores[name] = {
                k: (statistics.mean(r[k] for r in runs), max(r[k] for r in runs) - min(r[k] for r in runs))
                for k in ("top1", "top5")
            }
        result["seconds"]["CLIP training"] = time.perf_counter() - started
        result["zero_shot"] = scores
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict) -> str:
    z = r["zero_shot"]
    best = max(z, key=lambda name: z[name]["top1"][0])
    gain = z[best]["top1"][0] - z["round 0"]["top1"][0]
    over_raw = z[best]["top1"][0] - z["raw pool"]["top1"][0]
    lines = [
        "The hard sample web (about half the captions mismatched, generic or junk; small look-alike product shots) "
        "through the engine's stages with the demo's settings; the demo's CoCa trained on round 0 "
        f"(zero-shot top-1 {r['coca_zero_shot']['top1']:.3f}) scores, filters and recaptions round 1. "
        f"The demo's CLIP trained at equal samples seen ({r['samples']} a epoch × {r['epochs']}), "
        f"mean over seeds {r['seeds']} (± is the range); synthetic mix {r['mix']}.",
        "",
        "| pool | top-1 | top-5 |",
        "|---|---|---|",
        *(
            f"| {name} | {s['top1'][0]:.3f} ± {s['top1'][1]:.3f} | {s['top5'][0]:.3f} ± {s['top5'][1]:.3f} |"
            for name, s in z.items()
        ),
        "",
        f"Best: {best}, {gain:+.3f} top-1 over round 0 (today's curated pool without models) and {over_raw:+.3f} over "
        f"the raw pool: the goal of +0.05 over raw {'is met' if over_raw >= 0.05 else 'is not met'} on this web.",
        "",
        "Caption worth of each pool (ground truth): "
        + "; ".join(f"{name} {dict(sorted(c.items()))}" for name, c in r["pool_worth"].items())
        + ".",
        "",
        "The filter on the pool the heuristics kept (top fractions of the CLIP score from the CoCa's towers and of "
        "the caption likelihood under its decoder; none = not used):",
        "",
        "| CLIP score | likelihood | keeps correct | removes mismatched | removes generic | removes junk | "
        "drop precision | correct share before → after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in r["filter"]:
        lines.append(
            f"| {f['clip']} | {f['likelihood']} | {f['keeps_correct']:.2f} | {f.get('removes_mismatched', 0):.2f} | "
            f"{f.get('removes_generic', 0):.2f} | {f.get('removes_junk', 0):.2f} | {f['drop_precision']:.2f} | "
            f"{f['correct_share'][0]:.2f} → {f['correct_share'][1]:.2f} |"
        )
    caps = r["captioner"]
    lines += [
        "",
        "Synthetic captions naming the pictured concept: "
        + "; ".join(f"{group} {k}/{n} ({k / n:.2f})" for group, (k, n) in caps.items() if n)
        + ".",
        "",
        "| stage (CPU) | samples | samples/s | outside the model |",
        "|---|---|---|---|",
        *(f"| {s['stage']} | {s['samples']} | {s['per_s']:.1f} | {s['outside_model']:.0%} |" for s in r["speed"]),
        "",
        "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()) + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run()["markdown"])
