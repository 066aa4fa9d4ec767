"""Per-stage settings as Dagster resources, so a profile picks the defaults and run config can override them."""

from __future__ import annotations

import math

from dagster import ConfigurableResource
from pydantic import Field

from ops.crawl import CrawlConfig
from ops.dedup import DedupConfig
from ops.download import DownloadConfig


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
            eval_radius=self.eval_radius,
            min_contrast=self.min_contrast,
            eval_sets=tuple(self.eval_sets),
            embed_model=self.embed_model,
            embed_pretrained=self.embed_pretrained,
            semantic_threshold=self.semantic_threshold,
        )
