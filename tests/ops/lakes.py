"""Test lakes built the way the pipeline builds them: the real op of every stage, in the order the graph declares.

A shard starts as a parquet URL list under ``sources/`` that the real crawl op reads. Download is the real
``download_shard`` too, with only img2dataset itself replaced (:func:`offline_downloader`): nothing here may
reach a network, so the images the test hands over are written into the tar and img2dataset's per-row parquet
the way img2dataset writes them, and the op turns those into the ledger, the tar and the report as it always
does. Every later stage is its real op (:func:`run`), so each table has exactly the rows, columns and report its
stage publishes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from infra.lake import Lake
from ops import download as download_op
from ops import graph
from ops.bootstrap import write_bootstrap
from ops.crawl.shard import CrawlConfig, crawl_shard
from ops.curation.config import BalanceConfig, CurationConfig
from ops.curation.metadata import crawl_texts
from ops.curation.stage import count_entries, match_shard, publish_metadata
from ops.dataset.writer import DatasetConfig, publish_dataset
from ops.dedup import DedupConfig, build_index, dedup_shard, hash_shard
from ops.quality.clip_score import ClipScorer, clip_score_shard, clip_threshold
from ops.quality.config import QualityConfig
from ops.quality.heuristics import heuristics_shard
from ops.quality.judge import PAIRS
from ops.quality.judge_scores import judge_score_shard, judge_threshold
from ops.quality.shard import quality_shard
from ops.recaption.shard import RecaptionConfig, recaption_shard
from ops.report import StageReport
from ops.safety import SafetyConfig, safety_shard
from ops.vlm.backend import VlmBackend

CRAWL = CrawlConfig()
# img2dataset's per-row parquet, as download_shard reads it (``uid`` is the extra column it is asked to keep)
I2D_COLUMNS = ("uid", "url", "caption", "key", "status", "error_message", "width", "height", "original_width")
I2D_COLUMNS += ("original_height", "sha256")
ENTRY_LIST = "inputs/metaclip_entries.json"  # where :func:`run` puts the entry list it is given
FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
IMAGE_EXTENSIONS = ("jpg", "png", "webp")


def jpeg(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A smooth random pattern of this size, one per seed: distinct pixels and unrelated pHashes, so dedup keeps
    every seed's image (and drops the copies a test makes by reusing the bytes)."""
    grid = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grid).resize(size, Image.BILINEAR).save(buf, format="JPEG")
    return buf.getvalue()


@dataclass(frozen=True)
class Pair:
    """One image link of a source: the test's ``name`` for it makes its URL unless ``link`` gives one; ``image``
    is what the server would answer (None: the URL fails with HTTP 404)."""

    name: str
    text: str
    image: bytes | None = None
    link: str | None = None

    @property
    def url(self) -> str:
        return self.link or f"https://images.example.com/{self.name}.jpg"


def write_source(lake: Lake, shard: str, pairs: Sequence[Pair]) -> str:
    """The shard's source file: a parquet URL list (``url``, ``text``), as LAION-style lists are."""
    rel = f"sources/{shard}.parquet"
    buf = io.BytesIO()
    pq.write_table(pa.table({"url": [p.url for p in pairs], "text": [p.text for p in pairs]}), buf)
    lake.write_bytes(rel, buf.getvalue())
    return rel


def crawl(lake: Lake, shard: str, pairs: Sequence[Pair], config: CrawlConfig = CRAWL) -> dict[str, str]:
    """Run the crawl op over the shard's URL list; name -> uid of every pair (one crawl row each, in order)."""
    crawl_shard(lake, write_source(lake, shard, pairs), shard, config).check()
    uids = lake.read_parquet(graph.stage("crawl").table(shard), ["uid"])["uid"].to_pylist()
    assert len(uids) == len(pairs), "a URL list gives one crawl row per line"
    return {p.name: uid for p, uid in zip(pairs, uids, strict=True)}


@contextmanager
def offline_downloader(images: Mapping[str, bytes | None]) -> Iterator[None]:
    """``download_shard`` with img2dataset answered from ``images`` (uid -> bytes; None or absent: HTTP 404).

    Like img2dataset, every input row gets a key (``<shard 00000><row 0000>``), a successful sample is written as
    ``<key>.<image>`` + ``.txt`` + ``.json``, bytes Pillow cannot open fail to resize, and the per-row parquet
    records status, error, the image size seen and its SHA-256. The bytes are stored as given (no resizing or
    re-encoding), so a test decides exactly which pixels later stages see.
    """

    def fake(todo: pa.Table, work: Path, _config: download_op.DownloadConfig) -> dict[str, Path]:
        out = work / "out"
        out.mkdir(parents=True)
        rows: dict[str, list] = {name: [] for name in I2D_COLUMNS}
        successes = 0
        with tarfile.open(out / "00000.tar", "w") as tar:
            for i, (uid, url, text) in enumerate(
                zip(todo["uid"].to_pylist(), todo["url"].to_pylist(), todo["text"].to_pylist(), strict=True)
            ):
                key, data, size = f"{i:09d}", images.get(uid), None
                status, error = "success", None
                ext = "jpg"
                if data is None:
                    status, error = "failed_to_download", "HTTP Error 404: Not Found"
                else:
                    try:
                        image = Image.open(io.BytesIO(data))
                        size, ext = image.size, FORMAT_EXTENSIONS.get(image.format or "", "jpg")
                    except OSError:
                        status, error = "failed_to_resize", "cannot identify image file"
                if status == "success":
                    meta = {"uid": uid, "url": url, "caption": text, "key": key, "status": status}
                    files = ((ext, data), ("txt", text.encode()), ("json", json.dumps(meta).encode()))
                    for suffix, payload in files:
                        info = tarfile.TarInfo(f"{key}.{suffix}")
                        info.size = len(payload)
                        tar.addfile(info, io.BytesIO(payload))
                    successes += 1
                width, height = size if size is not None else (None, None)
                values = {"uid": uid, "url": url, "caption": text, "key": key, "status": status}
                values |= {"error_message": error, "width": width, "height": height}
                values |= {"original_width": width, "original_height": height}
                values["sha256"] = hashlib.sha256(data).hexdigest() if status == "success" else None
                for name, column in rows.items():
                    column.append(values.get(name))
        pq.write_table(pa.table(rows), out / "00000.parquet")
        stats = {"count": todo.num_rows, "successes": successes, "failed_to_download": todo.num_rows - successes}
        (out / "00000_stats.json").write_text(json.dumps(stats))
        return {"tar": out / "00000.tar", "parquet": out / "00000.parquet", "stats": out / "00000_stats.json"}

    with mock.patch.object(download_op, "_run_img2dataset", fake):
        yield


def download(lake: Lake, shard: str, images: Mapping[str, bytes | None]) -> StageReport:
    """Run the download op over what the crawl kept, the images answered by :func:`offline_downloader`."""
    with offline_downloader(images):
        report = download_op.download_shard(lake, shard, download_op.DownloadConfig())
    report.check()
    return report


def ingest(lake: Lake, shard: str, pairs: Sequence[Pair], config: CrawlConfig = CRAWL) -> dict[str, str]:
    """Crawl and download one shard; name -> uid."""
    uids = crawl(lake, shard, pairs, config)
    download(lake, shard, {uids[p.name]: p.image for p in pairs})
    return uids


def rewrite_tar(
    lake: Lake,
    shard: str,
    uids: Mapping[str, str],
    replace: Mapping[str, bytes] | None = None,
    remove_image: Iterable[str] = (),
) -> None:
    """Change the published download tar as a hand edit would, after the stages that read it ran: the image of
    each ``replace`` name becomes the given bytes, the image file of each ``remove_image`` name goes.

    The sample itself stays (its other files are kept): an image absent from its sample is a per-sample outcome
    for the readers. A sample gone from the tar altogether is damage, which they refuse
    (:mod:`tests.ops.tar_damage` makes that kind).
    """
    ledger = lake.read_parquet(graph.stage("download").table(shard), ["uid", "key"])
    key_of = dict(zip(ledger["uid"].to_pylist(), ledger["key"].to_pylist(), strict=True))
    new_bytes = {key_of[uids[n]]: data for n, data in (replace or {}).items()}
    imageless = {key_of[uids[n]] for n in remove_image}
    out = io.BytesIO()
    with (
        lake.open(f"download/{shard}.tar") as f,
        tarfile.open(fileobj=f) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for member in src:
            key, _, ext = member.name.partition(".")
            if key in imageless and ext in IMAGE_EXTENSIONS:
                continue
            data = src.extractfile(member).read()
            if key in new_bytes and ext in IMAGE_EXTENSIONS:
                data = new_bytes[key]
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    lake.write_bytes(f"download/{shard}.tar", out.getvalue())


def words_of(texts: Iterable[str]) -> list[str]:
    """An entry list that matches every caption with a word in it: each word, once."""
    return sorted({w for t in texts for w in re.split(r"[\s,.;:?!]+", t) if w})


@dataclass
class Settings:
    """What :func:`run` configures each stage with; models and backends are objects the test builds."""

    dedup: DedupConfig = field(default_factory=DedupConfig)
    entries: Sequence[str] = ()  # the MetaCLIP entry list; empty: every word of the shards' kept crawl text
    scorer: ClipScorer | None = None
    clip_batch_size: int = 64
    quality: QualityConfig = field(default_factory=QualityConfig)
    judge: VlmBackend | None = None
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    recaption: RecaptionConfig = field(default_factory=RecaptionConfig)
    captioner: VlmBackend | None = None
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    balance: BalanceConfig | None = None


def _runners(lake: Lake, shards: list[str], s: Settings) -> dict[str, object]:
    """One call per stage: per-shard stages get a shard, global ones run over ``shards``."""
    judge = s.quality.judge
    pairs = judge.mode == PAIRS
    return {
        "image_hashes": lambda shard: hash_shard(lake, shard, s.dedup),
        "dedup_index": lambda: build_index(lake, shards, s.dedup),
        "dedup": lambda shard: dedup_shard(lake, shard, s.dedup),
        "metaclip_metadata": lambda: publish_metadata(lake, CurationConfig(metadata_uri=ENTRY_LIST), shards),
        "curation": lambda shard: match_shard(lake, shard, list(s.entries)),
        "entry_counts": lambda: count_entries(lake, list(s.entries), shards),
        "heuristics": lambda shard: heuristics_shard(lake, shard, s.quality.heuristics.resolve()),
        # the models are objects the test builds (``Settings``), so no stage uses a bootstrapped one
        "bootstrap": lambda: write_bootstrap(lake, None, []),
        "clip_scores": lambda shard: clip_score_shard(lake, shard, s.scorer, s.clip_batch_size),
        "clip_score_threshold": lambda: clip_threshold(
            lake, shards, s.quality.clip.top_fraction, s.quality.clip.tolerance
        ),
        "judge_scores": lambda shard: judge_score_shard(lake, shard, s.judge if pairs else None, judge.batch_size),
        "judge_score_threshold": lambda: judge_threshold(
            lake,
            shards,
            *((judge.similarity_top_fraction, judge.likelihood_top_fraction) if pairs else (None, None)),
            tolerance=judge.tolerance,
        ),
        "quality": lambda shard: quality_shard(lake, shard, s.quality, judge=s.judge),
        "safety": lambda shard: safety_shard(lake, shard, s.safety),
        "recaption": lambda shard: recaption_shard(lake, shard, s.recaption, s.captioner),
        "dataset": lambda: publish_dataset(lake, shards, s.dataset, s.balance),
    }


def run(
    lake: Lake, shards: Sequence[str], through: str, settings: Settings | None = None, start: str = "image_hashes"
) -> None:
    """Run the real op of every stage from ``start`` through ``through`` in the graph's order, over ``shards``
    already ingested; a stage this helper does not know fails loudly, so a newly declared stage is never skipped."""
    settings = settings or Settings()
    shards = list(shards)
    if not settings.entries:
        settings = replace(settings, entries=words_of(crawl_texts(lake, None, shards)))
    lake.write_json(ENTRY_LIST, list(settings.entries))
    order = list(graph.stages())
    runners = _runners(lake, shards, settings)
    for name in order[order.index(start) : order.index(through) + 1]:
        if name not in runners:
            raise KeyError(f"tests.ops.lakes cannot run stage {name!r} yet")
        if graph.stage(name).per_shard:
            for shard in shards:
                result = runners[name](shard)
                result.check()
        else:
            runners[name]()
