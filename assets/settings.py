"""Per-stage settings as Dagster resources, so a profile picks the defaults and run config can override them."""

from __future__ import annotations

import math

from dagster import ConfigurableResource
from pydantic import Field

from infra.tracking import Tracker
from ops.crawl import CrawlConfig
from ops.curation import BalanceConfig, MetadataConfig
from ops.dedup import DedupConfig
from ops.download import DownloadConfig
from ops.quality import PRESETS, ClipModelSpec, ClipScorer, JudgeConfig, QualityConfig
from ops.recaption import RecaptionConfig
from ops.training import TrainConfig
from ops.training.checkpoint import register_model_config
from ops.vlm import VlmBackend, VlmConfig, load_backend


class CrawlSettings(ConfigurableResource):
    """How WARC/WAT pages become image-text pairs; see ``ops.crawl.CrawlConfig``."""

    allow_networks: list[str] = Field(
        default_factory=list, description="CIDRs allowed despite the private/loopback rule (demo: 127.0.0.0/8)."
    )
    honour_opt_out: bool = True
    max_text_chars: int = 2000
    max_url_chars: int = 2048
    max_images_per_page: int = 1000
    detect_language: bool = True

    def config(self) -> CrawlConfig:
        return CrawlConfig(
            allow_networks=tuple(self.allow_networks),
            honour_opt_out=self.honour_opt_out,
            max_text_chars=self.max_text_chars,
            max_url_chars=self.max_url_chars,
            max_images_per_page=self.max_images_per_page,
            detect_language=self.detect_language,
        )


class DownloadSettings(ConfigurableResource):
    """img2dataset settings; defaults are DataComp's (see ``ops.download.DownloadConfig``)."""

    image_size: int = 512
    resize_mode: str = "keep_ratio_largest"
    resize_only_if_bigger: bool = True
    encode_format: str = "jpg"
    encode_quality: int = 95
    timeout: int = 10
    retries: int = 2
    thread_count: int = 64
    min_image_size: int = 0
    max_image_area: float | None = Field(default=None, description="Pixels; unset means no limit.")
    max_aspect_ratio: float | None = None
    allow_networks: list[str] = Field(
        default_factory=list, description="Non-public networks the downloader may connect to (demo: 127.0.0.0/8)."
    )

    def config(self) -> DownloadConfig:
        return DownloadConfig(
            image_size=self.image_size,
            resize_mode=self.resize_mode,
            resize_only_if_bigger=self.resize_only_if_bigger,
            encode_format=self.encode_format,
            encode_quality=self.encode_quality,
            timeout=self.timeout,
            retries=self.retries,
            thread_count=self.thread_count,
            min_image_size=self.min_image_size,
            max_image_area=self.max_image_area or math.inf,
            max_aspect_ratio=self.max_aspect_ratio or math.inf,
            allow_networks=tuple(self.allow_networks),
        )


class DedupSettings(ConfigurableResource):
    """How strict dedup is; see ``ops.dedup.DedupConfig`` for what each setting trades off."""

    phash_radius: int = 2
    crop_radius: int | None = Field(default=6, description="Window pHash radius for crop candidates; null: off.")
    min_similarity: float | None = Field(
        default=0.97, description="Aligned detail correlation a pHash or crop candidate needs; null: unchecked."
    )
    eval_radius: int = 6
    min_contrast: float = 1.0
    eval_sets: list[str] = Field(
        default_factory=list, description="Eval image folders to decontaminate against (lake-relative or URI)."
    )
    embed_model: str | None = Field(default=None, description="open_clip model name: enables semantic dedup.")
    embed_pretrained: str | None = Field(default=None, description="open_clip pretrained tag or checkpoint path.")
    semantic_threshold: float = 0.95

    def config(self) -> DedupConfig:
        return DedupConfig(
            phash_radius=self.phash_radius,
            crop_radius=self.crop_radius,
            min_similarity=self.min_similarity,
            eval_radius=self.eval_radius,
            min_contrast=self.min_contrast,
            eval_sets=tuple(self.eval_sets),
            embed_model=self.embed_model,
            embed_pretrained=self.embed_pretrained,
            semantic_threshold=self.semantic_threshold,
        )


class QualitySettings(ConfigurableResource):
    """Quality filters: a heuristic preset, an optional CLIP-score filter and an optional VLM judge.

    With no CLIP model or judge configured the stage says so in its metadata and never invents a score.
    """

    heuristics_preset: str = Field(default="datacomp_basic", description=f"one of {sorted(PRESETS)}")
    clip_model: str | None = Field(default=None, description="open_clip architecture, e.g. ViT-B-32")
    clip_pretrained: str | None = Field(default=None, description="open_clip pretrained tag or checkpoint path")
    clip_mlflow_uri: str | None = Field(default=None, description="runs:/... or models:/... of a logged CLIP model")
    clip_registered_model: str | None = Field(
        default=None, description="use the newest version of this registered model, once one exists"
    )
    clip_architecture_config: dict | None = Field(
        default=None, description="open_clip config of clip_model when it is a custom architecture"
    )
    clip_threshold: float | None = Field(default=None, description="absolute CLIP-score threshold")
    clip_top_fraction: float | None = Field(default=None, description="keep this top fraction over ALL shards")
    judge_model: str | None = Field(default=None, description="VLM checkpoint folder or hub id for the judge")
    judge_backend: str = "hf"
    judge_mode: str = Field(default="generate", description="generate (parse 'score: {N}') or logits")
    judge_threshold: float = 9

    def quality_config(self) -> QualityConfig:
        return QualityConfig(
            heuristics=PRESETS[self.heuristics_preset],
            clip_threshold=self.clip_threshold,
            clip_top_fraction=self.clip_top_fraction,
            judge=JudgeConfig(threshold=self.judge_threshold, mode=self.judge_mode),
        )

    def clip_scorer(self, tracker: Tracker) -> tuple[ClipScorer | None, str]:
        """The scorer, or None, and a sentence for the UI saying which model scores (or why none does)."""
        if self.clip_model is None:
            return None, "no CLIP model configured"
        if self.clip_architecture_config is not None:
            register_model_config(self.clip_model, self.clip_architecture_config)
        mlflow_uri = self.clip_mlflow_uri
        if self.clip_registered_model is not None:
            version = tracker.latest_model_version(self.clip_registered_model)
            if version is None:
                return None, f"no version of {self.clip_registered_model} registered yet: no CLIP score"
            mlflow_uri = tracker.model_version_uri(self.clip_registered_model, version)
            description = f"{self.clip_model}@models:/{self.clip_registered_model}/{version}"
        spec = ClipModelSpec(model=self.clip_model, pretrained=self.clip_pretrained, mlflow_uri=mlflow_uri)
        return ClipScorer(spec), description if self.clip_registered_model else spec.name

    def judge(self) -> VlmBackend | None:
        if self.judge_model is None:
            return None
        return load_backend(VlmConfig(model=self.judge_model, backend=self.judge_backend))


class RecaptionSettings(ConfigurableResource):
    """The captioner; with none configured every sample keeps only its raw caption, and the metadata says so."""

    captioner_model: str | None = Field(default=None, description="VLM checkpoint folder or hub id")
    captioner_backend: str = "hf"
    prompt: str | None = Field(default=None, description="may quote the raw caption as {caption}")
    max_new_tokens: int = 160

    def config(self) -> RecaptionConfig:
        if self.prompt is None:
            return RecaptionConfig(max_new_tokens=self.max_new_tokens)
        return RecaptionConfig(prompt=self.prompt, max_new_tokens=self.max_new_tokens)

    def captioner(self) -> VlmBackend | None:
        if self.captioner_model is None:
            return None
        return load_backend(VlmConfig(model=self.captioner_model, backend=self.captioner_backend))


class CurationSettings(ConfigurableResource):
    """MetaCLIP curation: where the metadata comes from, and the balancing threshold.

    ``metadata_uri`` loads a MetaCLIP-format list (a lake path or any fsspec URI); without it, the list is built
    from WordNet plus unigrams and PMI bigrams of the pipeline's own crawled text. Exactly one of ``t`` and
    ``tail_fraction`` sets the balance point.
    """

    metadata_uri: str | None = Field(default=None, description="JSON list of entries; unset builds one")
    lang: str | None = "en"
    min_unigram_count: int = 100
    pmi_threshold: float = 30.0
    max_entries: int = 500_000
    t: float | None = Field(default=20_000, description="MetaCLIP's t (20,000 for 400M out of 1.6B)")
    tail_fraction: float | None = Field(default=None, description="derive t so this share of matches is tail")
    seed: int = 0

    def metadata_config(self) -> MetadataConfig:
        return MetadataConfig(
            lang=self.lang,
            min_unigram_count=self.min_unigram_count,
            pmi_threshold=self.pmi_threshold,
            max_entries=self.max_entries,
        )

    def balance_config(self) -> BalanceConfig:
        t = None if self.tail_fraction is not None else self.t
        return BalanceConfig(t=t, tail_fraction=self.tail_fraction, seed=self.seed)


class DatasetSettings(ConfigurableResource):
    """How the final training shards are written; every setting is part of the dataset version."""

    samples_per_shard: int = 10_000
    online_curation: bool = Field(
        default=False, description="include every sample with p_keep > 0 and let training redraw each epoch"
    )


class ModelSettings(ConfigurableResource):
    """CLIP training with open_clip_train under torchrun: any open_clip model name, or a custom config."""

    architecture: str = Field(default="ViT-B-32", description="open_clip model name, or the name of a custom config")
    architecture_config: dict | None = Field(default=None, description="a custom open_clip model config (JSON)")
    batch_size: int = 256
    epochs: int = 1
    lr: float = 5e-4
    warmup: int = 500
    workers: int = 1
    precision: str = "amp"
    nproc_per_node: int = Field(default=1, description="torchrun processes (GPUs, or CPU ranks with gloo)")
    synthetic_caption_prob: float = Field(default=0.0, description="chance of training on the synthetic caption")
    online_curation: bool = Field(default=False, description="redraw each sample by p_keep every epoch")
    seed: int = 0
    dataset_resampled: bool = Field(
        default=True,
        description="sample shards with replacement so every rank gets the same number of batches (an uneven "
        "split of shards over ranks otherwise stalls DDP at the end of an epoch)",
    )
    registered_model: str = "clipfoundry-clip"

    def train_config(self, train_data: str, samples: int, logs: str, name: str) -> TrainConfig:
        return TrainConfig(
            train_data=train_data,
            train_num_samples=samples,
            logs=logs,
            name=name,
            model=self.architecture,
            model_config=self.architecture_config,
            batch_size=self.batch_size,
            epochs=self.epochs,
            lr=self.lr,
            warmup=self.warmup,
            workers=self.workers,
            precision=self.precision,
            nproc_per_node=self.nproc_per_node,
            synthetic_caption_prob=self.synthetic_caption_prob,
            online_curation=self.online_curation,
            seed=self.seed,
            extra_args=("--dataset-resampled",) if self.dataset_resampled else (),
        )


class EvaluationSettings(ConfigurableResource):
    """Zero-shot classification sets (image folders or webdataset with classes.json/templates.json)."""

    classification_sets: list[str] = Field(default_factory=list, description="lake-relative eval set folders")
    retrieval_sets: list[str] = Field(default_factory=list, description="webdataset folders of image-caption pairs")
