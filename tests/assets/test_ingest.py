"""crawl and download materialised through Dagster for two shards: in-process, and with the CLI as CI would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from assets.bootstrap import bootstrap
from assets.crawl import crawl
from assets.curation import curation, entry_counts, metaclip_metadata
from assets.dataset import dataset
from assets.dedup import dedup, dedup_index, image_hashes
from assets.download import download
from assets.quality import (
    clip_score_threshold,
    clip_scores,
    heuristics,
    judge_score_threshold,
    judge_scores,
    quality,
)
from assets.recaption import recaption
from assets.safety import safety
from assets.settings import as_resource
from assets.training import evaluation, model
from infra.tracking import Tracker, default_tracking_uri
from ops.bootstrap import BOOTSTRAP, BootstrapConfig
from ops.curation import BalanceConfig, CurationConfig, spacing
from ops.curation.stage import ENTRY_COUNTS
from ops.dataset.writer import LATEST, DatasetConfig, decisions_path
from ops.evaluation.config import EvaluationConfig
from ops.quality.config import ClipScoreConfig, QualityConfig
from ops.quality.judge import JudgeConfig
from ops.recaption.shard import RecaptionConfig
from ops.training.config import ModelConfig
from pipelines.partitions import shards
from pipelines.profiles import SAMPLE_WEB_METADATA, resources
from tests.conftest import REPO
from tests.ops.training.tiny import TINY_COCA_CONFIG, TINY_COCA_MODEL


def _demo_resources(root: Path) -> dict:
    os.environ["CLIPFOUNDRY_DATA_ROOT"] = str(root)
    try:
        return resources("demo")
    finally:
        del os.environ["CLIPFOUNDRY_DATA_ROOT"]


def _tiny_loop() -> dict:
    """The demo's CapFilt settings with a CoCa that trains in seconds, and every scored sample kept."""
    return {
        "bootstrap_settings": as_resource(
            BootstrapConfig(
                architecture=TINY_COCA_MODEL,
                architecture_config=TINY_COCA_CONFIG,
                batch_size=8,
                epochs=2,
                lr=1e-3,
                warmup=2,
                precision="fp32",
                registered_model="clipfoundry-test-bootstrap",
            )
        ),
        "quality_settings": as_resource(
            QualityConfig(
                clip=ClipScoreConfig(bootstrap=True, top_fraction=1.0),
                judge=JudgeConfig(model=BOOTSTRAP, backend="coca", mode="pairs", likelihood_top_fraction=1.0),
            )
        ),
        "recaption_settings": as_resource(RecaptionConfig(model=BOOTSTRAP, backend="coca", max_new_tokens=8)),
    }


T_SMALL_WEB = 1  # the small web is tiny: 6 clean captions for its head concept, 1 for many tail concepts


def _head_is_cut_and_tail_is_kept(web) -> None:
    """MetaCLIP's promise on the sample web's known concepts: fewer head samples, every tail sample. Balancing is
    decided when the dataset is written, so the verdicts are the newest dataset's per-shard decisions.

    A sample counts for a concept when its image shows it (ground truth) and its caption names it.
    """
    truth = pq.read_table(web.root / "sample_web" / "ground_truth.parquet", columns=["url", "concept"])
    concept_of = dict(zip(truth["url"].to_pylist(), truth["concept"].to_pylist(), strict=True))
    per_concept: dict[str, list[bool]] = {}
    for key in web.shards:
        crawl = web.lake.read_parquet(f"crawl/{key}.parquet", columns=["uid", "url", "text"]).to_pylist()
        info = {r["uid"]: (concept_of.get(r["url"]), r["text"]) for r in crawl}
        version = web.lake.read_json(LATEST)["version"]
        table = web.lake.read_parquet(decisions_path(version, key), columns=["uid", "kept"])
        for uid, kept in zip(table["uid"].to_pylist(), table["kept"].to_pylist(), strict=True):
            concept, text = info[uid]
            if concept and f" {concept} " in spacing(text).lower():  # the caption names it as a whole phrase
                per_concept.setdefault(concept, []).append(kept)
    counts = web.lake.read_parquet(ENTRY_COUNTS, columns=["entry", "count"])
    count = dict(zip(counts["entry"].to_pylist(), counts["count"].to_pylist(), strict=True))
    matches = {c: max(count.get(c, 0), count.get(c.capitalize(), 0)) for c in per_concept}
    head = max(per_concept, key=lambda c: matches[c])
    assert matches[head] > T_SMALL_WEB and sum(per_concept[head]) < len(per_concept[head])
    tail = [c for c in per_concept if matches[c] <= T_SMALL_WEB]
    assert len(tail) >= 3 and all(all(per_concept[c]) for c in tail)


def _latest_check_passed(instance: DagsterInstance, asset: str) -> bool:
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [AssetCheckKey(AssetKey(asset), "rows_conserved")]
    )[AssetCheckKey(AssetKey(asset), "rows_conserved")]
    return record.event.dagster_event.event_specific_data.passed


def test_in_process_two_shards_through_dedup_with_checks_and_mlflow(small_web, dagster_home):
    instance = DagsterInstance.from_config(str(dagster_home))
    instance.add_dynamic_partitions(shards.name, small_web.shards)
    res = _demo_resources(small_web.root)
    run_ids = []
    for key in small_web.shards:
        result = materialize([crawl, download], partition_key=key, resources=res, instance=instance)
        assert result.success
        run_ids.append(result.run_id)
        for asset in ("crawl", "download"):
            assert _latest_check_passed(instance, asset)
    for asset in ("crawl", "download"):
        mats = instance.fetch_materializations(AssetKey(asset), limit=10).records
        assert sorted(m.partition_key for m in mats) == small_web.shards
        meta = mats[0].asset_materialization.metadata
        assert meta["rows_in"].value == meta["rows_kept"].value + meta["rows_dropped"].value
    dl = instance.fetch_materializations(AssetKey("download"), limit=1).records[0].asset_materialization.metadata
    assert dl["rows_kept"].value > 0

    tracker = Tracker(default_tracking_uri(small_web.root / "mlflow"), "clipfoundry")
    for run_id, key in zip(run_ids, small_web.shards, strict=True):
        [run] = tracker.runs_for(run_id)
        assert run.data.tags["dagster.partitions"] == key
        assert {"crawl.rows_in", "crawl.rows_kept", "download.rows_in", "download.rows_per_s"} <= set(run.data.metrics)
        assert run.data.metrics["download.rows_in"] == run.data.metrics["crawl.rows_kept"]

    # dedup: fingerprint each shard, one global index, then per-shard decisions, all with blocking checks
    for key in small_web.shards:
        assert materialize([image_hashes], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "image_hashes")
    index = materialize([dedup_index], resources=res, instance=instance)
    assert index.success
    meta = instance.fetch_materializations(AssetKey("dedup_index"), limit=1).records[0].asset_materialization.metadata
    assert meta["shards"].value == 2
    [index_run] = tracker.runs_for(index.run_id)
    assert "dedup/cluster_sizes.png" in [a.path for a in tracker.client.list_artifacts(index_run.info.run_id, "dedup")]
    for key in small_web.shards:
        assert materialize([dedup], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "dedup")
        report = small_web.lake.read_json(f"dedup/{key}.report.json")
        assert report["rows_in"] == small_web.lake.read_json(f"download/{key}.report.json")["rows_kept"]

    # MetaCLIP curation: the sample web's metadata, matches, global counts (balancing comes with the dataset)
    assert materialize([metaclip_metadata], resources=res, instance=instance).success
    for key in small_web.shards:
        assert materialize([curation], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "curation")
    assert materialize([entry_counts], resources=res, instance=instance).success
    [counts_run] = tracker.runs_for(
        instance.fetch_materializations(AssetKey("entry_counts"), limit=1).records[0].run_id
    )
    plots = [a.path for a in tracker.client.list_artifacts(counts_run.info.run_id, "curation")]
    assert "curation/entry_counts_head_tail.png" in plots

    # round 0 of the CapFilt loop (the demo's settings name the bootstrap everywhere): the heuristics, then a tiny
    # CoCa trained on what they and curation kept; top fractions of 1 keep every scored sample here, so the
    # balancing checks below see the same pool as without models
    for key in small_web.shards:
        assert materialize([heuristics], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "heuristics")
    res = {**res, **_tiny_loop()}
    boot = materialize([bootstrap], resources=res, instance=instance)
    assert boot.success
    made = small_web.lake.read_json("bootstrap/model.json")
    assert made["used_by"] == ["clip_scores", "judge_scores", "recaption"]
    version = made["model"]["version"]
    uri = f"models:/clipfoundry-test-bootstrap/{version}"
    mv = tracker.client.get_model_version("clipfoundry-test-bootstrap", version)
    assert mv.tags["clipfoundry.round"] == "0" and mv.tags["dataset.version"] == made["model"]["dataset_version"]
    assert "eval.eval/sample_web/top1" in mv.tags  # round 0's zero-shot score, on the version itself
    manifest = small_web.lake.read_json(f"dataset/{made['model']['dataset_version']}/manifest.json")
    assert manifest["settings"]["through"] == "heuristics" and manifest["samples"] == made["model"]["samples"] > 0
    meta = instance.fetch_materializations(AssetKey("bootstrap"), limit=1).records[0].asset_materialization.metadata
    assert meta["round"].value == 0 and sorted(meta["affected_shards"].value) == sorted(small_web.shards)

    # round 1: every score, verdict and caption from exactly that version
    for key in small_web.shards:
        assert materialize([clip_scores, judge_scores], partition_key=key, resources=res, instance=instance).success
        assert _latest_check_passed(instance, "clip_scores") and _latest_check_passed(instance, "judge_scores")
        assert small_web.lake.read_json(f"quality/clip/{key}.report.json")["extra"]["model"].endswith(f"@{uri}")
        assert small_web.lake.read_json(f"quality/judge_scores/{key}.report.json")["extra"]["model"].endswith(uri)
    assert materialize([clip_score_threshold, judge_score_threshold], resources=res, instance=instance).success
    for key in small_web.shards:
        assert materialize([quality, safety, recaption], partition_key=key, resources=res, instance=instance).success
        assert all(_latest_check_passed(instance, a) for a in ("quality", "safety", "recaption"))
        q = small_web.lake.read_json(f"quality/{key}.report.json")
        assert q["rows_in"] == small_web.lake.read_json(f"heuristics/{key}.report.json")["rows_kept"]
        assert q["extra"]["clip_model"].endswith(f"@{uri}") and q["extra"]["judge"].endswith(uri)
        captions = small_web.lake.read_parquet(f"recaption/{key}.parquet", columns=["synthetic_text", "captioner"])
        # the same CoCa captioned every sample (a CoCa this small may end a caption at once: no text, still named)
        assert set(captions["captioner"].to_pylist()) == {q["extra"]["judge"]}
    meta = instance.fetch_materializations(AssetKey("recaption"), limit=1).records[0].asset_materialization.metadata
    assert meta["captioner"].value.endswith(uri)

    # dataset: balanced over the global counts; a second materialisation with unchanged inputs keeps the version
    small_t = {
        **res,
        "curation_settings": as_resource(CurationConfig(SAMPLE_WEB_METADATA, balance=BalanceConfig(t=T_SMALL_WEB))),
    }
    first = materialize([dataset], resources=small_t, instance=instance)
    assert first.success
    second = materialize([dataset], resources=small_t, instance=instance)
    assert second.success
    versions = [
        r.asset_materialization.metadata for r in instance.fetch_materializations(AssetKey("dataset"), limit=2).records
    ]
    assert versions[0]["version"].value == versions[1]["version"].value
    assert not versions[0]["written"].value
    kept_by_recaption = sum(
        small_web.lake.read_json(f"recaption/{k}.report.json")["rows_kept"] for k in small_web.shards
    )
    assert 0 < versions[0]["samples"].value < kept_by_recaption  # balancing cut the head
    _head_is_cut_and_tail_is_kept(small_web)

    _train_and_evaluate(small_web, res, instance, tracker)


def test_cli_materialize_partition_range_as_ci_would(small_web, dagster_home):
    instance = DagsterInstance.from_config(str(dagster_home))
    instance.add_dynamic_partitions(shards.name, small_web.shards)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": str(small_web.root),
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    cmd = [dagster, "asset", "materialize", "-m", "pipelines.definitions", "--select", "crawl,download"]
    one = subprocess.run(
        [*cmd, "--partition", small_web.shards[0]], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert one.returncode == 0, one.stderr[-3000:]
    both = subprocess.run(
        [*cmd, "--partition-range", f"{small_web.shards[0]}...{small_web.shards[1]}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert both.returncode == 0, both.stderr[-3000:]
    instance = DagsterInstance.from_config(str(dagster_home))
    for asset in ("crawl", "download"):
        records = instance.fetch_materializations(AssetKey(asset), limit=10).records
        assert sorted(r.partition_key for r in records) == sorted([small_web.shards[0], *small_web.shards])
        assert _latest_check_passed(instance, asset)


TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _train_and_evaluate(small_web, res, instance, tracker) -> None:
    """Two CPU ranks (gloo) under torchrun through Dagster Pipes; MLflow gets steps, params and the model."""
    import mlflow.pytorch
    import torch
    from PIL import Image

    res = {
        **res,
        "dataset_settings": as_resource(DatasetConfig(samples_per_shard=16)),
        "model_settings": as_resource(
            ModelConfig(
                architecture="cf-tiny-asset-test",
                architecture_config=TINY,
                batch_size=8,
                epochs=4,
                lr=1e-3,
                warmup=2,
                workers=1,
                precision="fp32",
                nproc_per_node=2,
                registered_model="clipfoundry-test",
            )
        ),
        "evaluation_settings": as_resource(EvaluationConfig(classification_sets=("sample_web/eval/sample_web",))),
    }
    assert materialize([dataset], resources=res, instance=instance).success
    trained = materialize([model], resources=res, instance=instance)
    assert trained.success
    meta = {
        k: v.value
        for k, v in instance.fetch_materializations(AssetKey("model"), limit=1)
        .records[0]
        .asset_materialization.metadata.items()
    }
    assert meta["steps"] > 4 and meta["final_loss"] < meta["first_loss"]
    [run] = tracker.runs_for(trained.run_id)
    history = tracker.client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == meta["steps"]  # rank 0 alone reports: one value per step
    assert run.data.params["train.nproc_per_node"] == "2"
    name, version = meta["registered_model"].split("/")
    mv = tracker.client.get_model_version(name, version)
    assert mv.tags["dataset.version"] == meta["dataset_version"]
    loaded = mlflow.pytorch.load_model(tracker.model_version_uri(name, version))
    image = torch.from_numpy(__import__("numpy").asarray(Image.new("RGB", (32, 32), (200, 0, 0)), dtype="float32"))
    emb = loaded.encode_image(image.permute(2, 0, 1)[None] / 255.0)
    assert emb.shape == (1, 32) and torch.isfinite(emb).all()

    assert materialize([evaluation], resources=res, instance=instance).success
    ev = instance.fetch_materializations(AssetKey("evaluation"), limit=1).records[0].asset_materialization.metadata
    assert 0.0 <= ev["eval/sample_web/top1"].value <= 1.0
    assert "mean_per_class_recall" in " ".join(ev)
    assert "rarest classes first" in ev["neglected_tails"].value

    # the next curation round scores CLIP with the model just trained and registered (top half kept)
    res["quality_settings"] = as_resource(
        QualityConfig(
            clip=ClipScoreConfig(
                model="cf-tiny-asset-test",
                architecture_config=TINY,
                registered_model="clipfoundry-test",
                top_fraction=0.5,
            )
        )
    )
    key, other = small_web.shards
    assert materialize([clip_scores], partition_key=key, resources=res, instance=instance).success
    # the other shard's scores are from before the model existed: one threshold cannot span both, and says so
    stale = materialize([clip_score_threshold], resources=res, instance=instance, raise_on_error=False)
    assert not stale.success
    [failure] = [e for e in stale.all_events if e.is_step_failure]
    assert f"re-run clip_scores for ['{other}']" in failure.step_failure_data.error.cause.message
    assert materialize([clip_scores], partition_key=other, resources=res, instance=instance).success
    assert materialize([clip_score_threshold], resources=res, instance=instance).success
    assert materialize([quality], partition_key=key, resources=res, instance=instance).success
    q = small_web.lake.read_json(f"quality/{key}.report.json")
    assert q["extra"]["clip_model"].startswith("cf-tiny-asset-test@")
    sm = instance.fetch_materializations(AssetKey("clip_scores"), limit=1).records[0].asset_materialization.metadata
    assert sm["model"].value == f"cf-tiny-asset-test@models:/clipfoundry-test/{version}"
    assert q["dropped"].get("clip_score_low", 0) > 0
