"""One switch, ``CLIPFOUNDRY_PROFILE``, picks storage, tracking and stage defaults for a whole deployment.

- ``demo``: the embedded sample web on 127.0.0.1, small images, everything local under ``./data``.
- ``local``: a real crawl on one machine; local (or s3://) data root, DataComp download settings.
- ``production``: the data root, S3 endpoint, credentials and MLflow server all come from the environment.

Secrets are passed as ``EnvVar`` so Dagster shows the variable name, never the value.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar, in_process_executor

from assets.settings import as_resource, settings_key
from infra.lake import check_endpoint_url, check_root
from infra.resources import LakeResource, MlflowResource
from infra.sample_web import ORIGIN as SAMPLE_WEB_ORIGIN
from infra.tracking import check_tracking_uri
from ops import graph
from ops.bootstrap import BOOTSTRAP, COCA_BACKEND, BootstrapConfig
from ops.crawl.shard import CrawlConfig
from ops.curation.config import BalanceConfig, CurationConfig
from ops.dataset.writer import DatasetConfig
from ops.dedup.config import DedupConfig
from ops.download import DownloadConfig
from ops.evaluation.config import EvaluationConfig
from ops.quality.config import ClipScoreConfig, QualityConfig
from ops.quality.judge import PAIRS, JudgeConfig
from ops.recaption.shard import RecaptionConfig
from ops.training.config import ModelConfig

PROFILES = ("demo", "local", "production")
# The sample web's MetaCLIP-format entry list (its colours, shapes and concepts), published by the demo.
SAMPLE_WEB_METADATA = "sample_web/metadata.json"
# Where `make ui` serves `mlflow ui` over the demo's local store: the demo's asset metadata links there.
DEMO_MLFLOW_UI = "http://127.0.0.1:5000"
# A CLIP small enough to train on the sample web on two CPU cores in a couple of minutes.
DEMO_MODEL = "clipfoundry-demo"
DEMO_MODEL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
}
# The demo's round-0 model: a CoCa of the same size (the towers above, with the attentional pooling and token
# outputs CoCa needs) and a two-layer captioning decoder. open_clip_train picks CoCa's loss by the "coca" in the name.
# Its captions are cut at 16 tokens (the sample web's are shorter): the decoder's projection onto the 49,408-token
# vocabulary at every position is most of a CPU step, about 1.7 s at 32 tokens and 1.0 s at 16 (batch 64).
DEMO_COCA = "coca-clipfoundry-demo"
DEMO_COCA_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {
        **DEMO_MODEL_CONFIG["vision_cfg"],
        "attentional_pool": True,
        "attn_pooler_heads": 2,
        "attn_pooler_queries": 16,
        "output_tokens": True,
    },
    "text_cfg": {**DEMO_MODEL_CONFIG["text_cfg"], "context_length": 16, "embed_cls": True, "output_tokens": True},
    "multimodal_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    "custom_text": True,
}


def current_profile() -> str:
    profile = os.environ.get("CLIPFOUNDRY_PROFILE", "local")
    if profile not in PROFILES:
        raise ValueError(f"CLIPFOUNDRY_PROFILE must be one of {PROFILES}, not {profile!r}")
    return profile


def _env_or_none(name: str) -> Any:
    """An EnvVar when the variable is set, so optional settings stay optional."""
    return EnvVar(name) if os.environ.get(name) else None


def _lake(default_root: str | None) -> LakeResource:
    root = os.environ.get("CLIPFOUNDRY_DATA_ROOT", default_root)
    if root is None:
        raise ValueError("CLIPFOUNDRY_DATA_ROOT must be set in the production profile")
    return LakeResource(  # URIs with credentials refused here, before Dagster stores them in a job snapshot
        root=check_root(root),
        s3_endpoint_url=check_endpoint_url(os.environ.get("CLIPFOUNDRY_S3_ENDPOINT_URL") or None),
        aws_access_key_id=_env_or_none("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_env_or_none("AWS_SECRET_ACCESS_KEY"),
        aws_region=os.environ.get("AWS_DEFAULT_REGION") or None,
    )


def executor() -> Any:
    """``CLIPFOUNDRY_EXECUTOR``: ``k8s`` runs one pod per step (``k8s_job_executor``, see
    ``infra/deploy/k8s/executor.yaml``); ``in_process`` runs a run's steps one after another in the run's own
    process (the demo's default: its runs are small and one process start per step would dominate);
    ``multiprocess`` is Dagster's default, a process per step; ``None`` leaves Dagster's default."""
    choice = os.environ.get("CLIPFOUNDRY_EXECUTOR") or ("in_process" if current_profile() == "demo" else "")
    if choice not in ("", "multiprocess", "in_process", "k8s"):
        raise ValueError(f"CLIPFOUNDRY_EXECUTOR must be 'multiprocess', 'in_process' or 'k8s', not {choice!r}")
    if choice == "in_process":
        return in_process_executor
    if choice != "k8s":
        return None
    from infra.deploy.k8s import k8s_executor

    return k8s_executor()


def sample_web_port() -> int:
    """The port the demo serves its sample web on (``CLIPFOUNDRY_SAMPLE_WEB_PORT``)."""
    return int(os.environ.get("CLIPFOUNDRY_SAMPLE_WEB_PORT", "8765"))


def sensor_interval() -> int:
    """Seconds between evaluations of the sensors: quick for the demo, relaxed for a deployment."""
    return 5 if current_profile() == "demo" else 30


def resources(profile: str | None = None) -> dict[str, Any]:
    """The resource set for a profile (``current_profile()`` when not given): services, then one settings resource
    per engine config the stage graph declares, at the profile's choice or the config's own defaults."""
    profile = profile or current_profile()
    mlflow = MlflowResource(
        # refused here when it carries credentials, before Dagster stores the resource config in a job snapshot
        tracking_uri=check_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "")) or None,
        experiment=os.environ.get("CLIPFOUNDRY_EXPERIMENT", "clipfoundry"),
        ui_url=os.environ.get("CLIPFOUNDRY_MLFLOW_UI_URL") or (DEMO_MLFLOW_UI if profile == "demo" else None),
    )
    services = {"lake": _lake("data" if profile != "production" else None), "mlflow": mlflow}
    return services | {key: as_resource(config) for key, config in stage_settings(profile).items()}


def stage_settings(profile: str) -> dict[str, Any]:
    """Each settings resource key and the engine config the profile runs with: its own choices, else defaults."""
    chosen = _demo_settings() if profile == "demo" else {}
    return {settings_key(c): chosen.get(settings_key(c), c()) for c in graph.iter_settings()}


def _demo_settings() -> dict[str, Any]:
    """What the demo changes from the defaults: the sample web on 127.0.0.1, small images, a tiny CLIP, and the
    CapFilt loop with a tiny CoCa (round 0 trains it, round 1 scores, filters and recaptions with it)."""
    return {
        "crawl_settings": CrawlConfig(allow_networks=("127.0.0.0/8",)),
        "download_settings": DownloadConfig(
            image_size=128,
            timeout=5,
            retries=1,
            thread_count=32,
            allow_networks=("127.0.0.0/8",),
            origin_overrides=(f"{SAMPLE_WEB_ORIGIN}=http://127.0.0.1:{sample_web_port()}",),
        ),
        "dedup_settings": DedupConfig(eval_sets=("sample_web/eval/sample_web",)),
        "curation_settings": CurationConfig(metadata_uri=SAMPLE_WEB_METADATA, balance=BalanceConfig(t=50)),
        # the CapFilt loop: round 0's CoCa scores (CLIP score and judge), filters and recaptions round 1
        "bootstrap_settings": BootstrapConfig(
            architecture=DEMO_COCA,
            architecture_config=DEMO_COCA_CONFIG,
            batch_size=64,
            epochs=4,
            lr=1e-3,
            warmup=10,
            precision="fp32",
            registered_model="clipfoundry-demo-bootstrap",
        ),
        "quality_settings": QualityConfig(
            clip=ClipScoreConfig(bootstrap=True, top_fraction=0.9),
            judge=JudgeConfig(model=BOOTSTRAP, backend=COCA_BACKEND, mode=PAIRS, likelihood_top_fraction=0.9),
        ),
        "recaption_settings": RecaptionConfig(model=BOOTSTRAP, backend=COCA_BACKEND, max_new_tokens=15, batch_size=64),
        "dataset_settings": DatasetConfig(samples_per_shard=256),
        "model_settings": ModelConfig(
            architecture=DEMO_MODEL,
            architecture_config=DEMO_MODEL_CONFIG,
            batch_size=64,
            epochs=4,
            lr=1e-3,
            warmup=10,
            workers=1,
            precision="fp32",
        ),
        "evaluation_settings": EvaluationConfig(classification_sets=("sample_web/eval/sample_web",)),
    }
