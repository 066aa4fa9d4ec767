"""One switch, ``CLIPFOUNDRY_PROFILE``, picks storage, tracking and stage defaults for a whole deployment.

- ``demo``: the embedded sample web on 127.0.0.1, small images, everything local under ``./data``.
- ``local``: a real crawl on one machine; local (or s3://) data root, DataComp download settings.
- ``production``: the data root, S3 endpoint, credentials and MLflow server all come from the environment.

Secrets are passed as ``EnvVar`` so Dagster shows the variable name, never the value.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from assets.settings import (
    CrawlSettings,
    CurationSettings,
    DatasetSettings,
    DedupSettings,
    DownloadSettings,
    EvaluationSettings,
    ModelSettings,
    QualitySettings,
    RecaptionSettings,
)
from infra.lake import check_endpoint_url, check_root
from infra.resources import LakeResource, MlflowResource
from infra.tracking import check_tracking_uri

PROFILES = ("demo", "local", "production")
# The sample web's MetaCLIP-format entry list (its colours, shapes and concepts), published by the demo.
SAMPLE_WEB_METADATA = "sample_web/metadata.json"
# A CLIP small enough to train on the sample web on two CPU cores in a couple of minutes.
DEMO_MODEL = "clipfoundry-demo"
DEMO_MODEL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
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
    """``k8s_job_executor`` (one pod per step, ``infra/deploy/k8s/executor.yaml``) when
    ``CLIPFOUNDRY_EXECUTOR=k8s``; otherwise ``None``, i.e. Dagster's default multiprocess executor."""
    choice = os.environ.get("CLIPFOUNDRY_EXECUTOR", "")
    if choice not in ("", "multiprocess", "k8s"):
        raise ValueError(f"CLIPFOUNDRY_EXECUTOR must be 'multiprocess' or 'k8s', not {choice!r}")
    if choice != "k8s":
        return None
    from infra.deploy.k8s import k8s_executor

    return k8s_executor()


def resources(profile: str | None = None) -> dict[str, Any]:
    """The resource set for a profile (``current_profile()`` when not given)."""
    profile = profile or current_profile()
    mlflow = MlflowResource(
        # refused here when it carries credentials, before Dagster stores the resource config in a job snapshot
        tracking_uri=check_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "")) or None,
        experiment=os.environ.get("CLIPFOUNDRY_EXPERIMENT", "clipfoundry"),
    )
    if profile == "demo":
        return {
            "lake": _lake("data"),
            "mlflow": mlflow,
            "crawl_settings": CrawlSettings(allow_networks=["127.0.0.0/8"]),
            "download_settings": DownloadSettings(
                image_size=128, timeout=5, retries=1, thread_count=32, allow_networks=["127.0.0.0/8"]
            ),
            "dedup_settings": DedupSettings(eval_sets=["sample_web/eval/sample_web"]),
            "curation_settings": CurationSettings(metadata_uri=SAMPLE_WEB_METADATA, t=50),
            # the CLIP score uses the model the demo trained on its previous run, once there is one
            "quality_settings": QualitySettings(
                clip_model=DEMO_MODEL,
                clip_architecture_config=DEMO_MODEL_CONFIG,
                clip_registered_model="clipfoundry-clip",
                clip_top_fraction=0.7,
            ),
            "recaption_settings": RecaptionSettings(),
            "dataset_settings": DatasetSettings(samples_per_shard=256),
            "model_settings": ModelSettings(
                architecture=DEMO_MODEL,
                architecture_config=DEMO_MODEL_CONFIG,
                batch_size=64,
                epochs=4,
                lr=1e-3,
                warmup=10,
                workers=1,
                precision="fp32",
            ),
            "evaluation_settings": EvaluationSettings(classification_sets=["sample_web/eval/sample_web"]),
        }
    return {
        "lake": _lake("data" if profile == "local" else None),
        "mlflow": mlflow,
        "crawl_settings": CrawlSettings(),
        "download_settings": DownloadSettings(),
        "dedup_settings": DedupSettings(),
        "curation_settings": CurationSettings(),
        "quality_settings": QualitySettings(),
        "recaption_settings": RecaptionSettings(),
        "dataset_settings": DatasetSettings(),
        "model_settings": ModelSettings(),
        "evaluation_settings": EvaluationSettings(),
    }
