"""A small lake with every stage's tables and download tars, built by the real ops (:mod:`tests.ops.lakes`).

Captions name the image's colour ("a red square 3") and red is the head of the entry distribution, so MetaCLIP
balancing has something to cut. Each sample's position in its shard decides where it is dropped, and by the
stage that would drop it in production: an empty caption at crawl, a failing URL at download, a repeated image
at dedup, a caption that names no colour at curation, a two-word caption at heuristics, an e-mail address at
safety.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from infra.lake import Lake
from ops.quality.config import HeuristicRules, QualityConfig
from ops.recaption.shard import RecaptionConfig
from ops.vlm.backend import VlmBackend
from tests.ops.lakes import Pair, Settings, ingest, run

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
ENTRIES = list(COLOURS)  # the MetaCLIP entry list: one entry per colour
# 32 px images and captions py3langid is unsure about: the size and language rules are off, the rest is DataComp's
QUALITY = QualityConfig(heuristics=HeuristicRules(min_side=0, languages=()))


def image_bytes(colour: str, rng: np.random.Generator, size: int = 32) -> bytes:
    pixels = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def shard_names(n_shards: int) -> list[str]:
    return [f"shard-{s:03d}" for s in range(n_shards)]


def pairs_for(s: int, per_shard: int, rng: np.random.Generator) -> list[Pair]:
    """One shard's pairs; ``i % 10`` says where a pair is dropped (nowhere for 0-3)."""
    names = list(COLOURS)
    pairs: list[Pair] = []
    for i in range(per_shard):
        colour = "red" if i % 3 else names[(s * per_shard + i) // 3 % len(names)]
        text, image = f"a {colour} square {i}", image_bytes(colour, rng)
        kind = i % 10
        if kind == 9:
            text = ""  # crawl: no_text
        elif kind == 8:
            image = None  # download: the URL fails
        elif kind == 7:
            image = pairs[-1].image  # dedup: the same pixels as the pair before it
        elif kind == 6:
            text = f"an empty frame {i}"  # curation: no_match
        elif kind == 5:
            text = f"{colour} {i}"  # heuristics: caption_too_short
        elif kind == 4:
            text = f"a {colour} square {i}, write to owner{i}@example.com"  # safety: pii_email
        pairs.append(Pair(f"s{s}-{i}", text, image))
    return pairs


def build_lake(
    root: Path,
    n_shards: int = 2,
    per_shard: int = 40,
    seed: int = 0,
    through: str = "recaption",
    captioner: VlmBackend | None = None,
) -> Lake:
    """Crawl and download every shard, then run the real stages after download through ``through``."""
    lake = Lake(str(root))
    rng = np.random.default_rng(seed)
    shards = shard_names(n_shards)
    for s, shard in enumerate(shards):
        ingest(lake, shard, pairs_for(s, per_shard, rng))
    if through != "download":
        settings = Settings(
            entries=ENTRIES, quality=QUALITY, captioner=captioner, recaption=RecaptionConfig(max_new_tokens=8)
        )
        run(lake, shards, through, settings)
    return lake
