"""The index on look-alike images: generated product photos on a plain background, where pHash candidates crowd.

The work per image is bounded (counted, not timed: the time bound per image is measured by ``bench/dedup.py``),
distinct products stay apart even when their pHashes are identical, and copies still find their product.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from infra.lake import Lake
from infra.synthetic.products import images
from ops.dedup import DedupConfig, build_index, dedup_shard, hash_shard
from ops.dedup.crops import CANDIDATES_PER_CLUSTER, coarse, coarse_similarity
from ops.dedup.fingerprint import fingerprint, phash_from_pixels
from tests.ops.dedup.lakes import sample, write_shard

PRODUCTS = 240
COPIED = 12
SIDE = 128
PHASES = ("load_s", "eval_s", "cluster_s", "candidates_s", "details_s", "order_s", "check_s", "write_s")
COUNTS = (
    "candidates_full",
    "candidates_crop",
    "images_with_candidates_capped",
    "detail_images",
    "check_rounds",
    "checked_pairs",
    "checked_links",
    "checked_crop_links",
    "candidates_left_unchecked",
    "images_out_of_checks",
)


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _copies(image: Image.Image) -> list[bytes]:
    w, h = image.size
    return [
        _jpeg(image.resize((w * 3 // 4, h * 3 // 4), Image.BICUBIC)),
        _jpeg(image, quality=60),
        _jpeg(image.crop((w // 20, 0, w - w // 20, h))),
        _jpeg(ImageEnhance.Brightness(image).enhance(1.1)),
    ]


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> tuple[Lake, list[str]]:
    """Products split over two shards, four copies of each of the first ``COPIED`` in a third; returns the lake
    and the shard names."""
    photos = list(images(3, PRODUCTS, SIDE))
    shards = {"products-a": [], "products-b": [], "copies": []}
    for k, photo in enumerate(photos):
        shards["products-a" if k % 2 else "products-b"].append(sample(f"p{k}", _jpeg(photo)))
        if k < COPIED:
            shards["copies"] += [sample(f"p{k}-copy{c}", data) for c, data in enumerate(_copies(photo))]
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    for name, samples in shards.items():
        write_shard(lake, name, samples)
        hash_shard(lake, name, DedupConfig())
    return lake, list(shards)


def _decisions(lake: Lake, shards: list[str], config: DedupConfig) -> dict[str, dict]:
    for shard in shards:
        dedup_shard(lake, shard, config)
    return {row["uid"]: row for shard in shards for row in lake.read_parquet(f"dedup/{shard}.parquet").to_pylist()}


def test_products_stay_apart_copies_join_and_work_is_bounded(products):
    lake, shards = products
    config = DedupConfig()
    report = build_index(lake, shards, config)
    extra = report.extra
    images_in = report.rows_in
    assert extra["candidates_crop"] > 4 * images_in  # the set is crowded: look-alikes everywhere
    assert extra["checked_pairs"] <= config.checks_per_image * images_in
    assert extra["check_rounds"] <= config.checks_per_image
    per_search = config.candidates_per_image * CANDIDATES_PER_CLUSTER * images_in
    assert extra["candidates_full"] <= per_search and extra["candidates_crop"] <= per_search
    assert all(isinstance(extra[k], int) for k in COUNTS) and all(isinstance(extra[k], float) for k in PHASES)

    rows = _decisions(lake, shards, config)
    cluster = {u: row["duplicate_of"] or u for u, row in rows.items()}
    by_name = {s["name"]: s["uid"] for s in _names()}
    products = [cluster[by_name[f"p{k}"]] for k in range(PRODUCTS)]
    assert len(set(products)) == PRODUCTS, "a distinct product was merged into another"
    for k in range(COPIED):
        for c in range(4):
            assert cluster[by_name[f"p{k}-copy{c}"]] == products[k]
    assert {r["reason"] for r in rows.values() if not r["kept"]} == {"near_duplicate"}


def _names() -> list[dict]:
    """The samples' names and uids, as the fixture made them (uids follow from the names)."""
    names = [f"p{k}" for k in range(PRODUCTS)] + [f"p{k}-copy{c}" for k in range(COPIED) for c in range(4)]
    return [sample(name, b"") for name in names]


def test_tight_bounds_cap_the_work_and_say_so(products):
    """With one check and two candidate clusters an image, the index checks at most one pair an image and
    reports what it left: crowded images had more candidates, some candidates were never checked."""
    lake, shards = products
    config = replace(DedupConfig(), candidates_per_image=2, checks_per_image=1)
    report = build_index(lake, shards, config)
    extra = report.extra
    assert extra["check_rounds"] == 1
    assert 0 < extra["checked_pairs"] <= report.rows_in
    assert extra["images_with_candidates_capped"] > 0
    assert extra["candidates_left_unchecked"] > 0 and extra["images_out_of_checks"] > 0
    rows = _decisions(lake, shards, config)
    assert sum(not r["kept"] for r in rows.values()) <= COPIED * 4  # bounds cost recall, never precision here


def test_identical_phash_of_distinct_products_is_checked(tmp_path):
    """A product and the same product with another label share their pHash (the label is detail a pHash does
    not see); they are distinct images and stay apart."""
    product = list(images(11, 2, 160))[1]
    relabelled = product.copy()
    draw = ImageDraw.Draw(relabelled)
    draw.rectangle((70, 70, 88, 76), fill=(20, 20, 20))
    draw.rectangle((66, 84, 92, 88), fill=(240, 240, 240))
    blobs = [_jpeg(product), _jpeg(relabelled)]
    thumbs = np.stack([fingerprint(b).thumb for b in blobs])
    assert len(set(phash_from_pixels(thumbs).tolist())) == 1, "precondition: identical pHashes"
    lake = Lake(str(tmp_path / "lake"))
    write_shard(lake, "s", [sample("product", blobs[0]), sample("relabelled", blobs[1])])
    config = DedupConfig()
    hash_shard(lake, "s", config)
    report = build_index(lake, ["s"], config)
    assert report.rows_kept == 2 and report.extra["checked_pairs"] > 0


def test_coarse_score_prefers_the_copy_and_depends_on_the_pair_alone():
    """The cheap score that orders an image's candidates: a crop of a product scores above the other products
    from its true window, and a pair scores the same alone as in a batch."""
    photos = list(images(8, 40, 160))
    details = np.stack([fingerprint(_jpeg(p)).detail for p in photos])
    crop = fingerprint(_jpeg(photos[0].crop((8, 0, 160, 152)))).detail  # 5% off the left and the bottom
    thumbs = coarse(np.concatenate([details, crop[None]]))
    cut = np.array([[0.05, 0.0, 0.0, 0.05]])
    scores = coarse_similarity(thumbs, np.arange(40), np.full(40, 40), np.repeat(cut, 40, axis=0))
    assert scores.argmax() == 0 and scores[0] > 0.9
    alone = coarse_similarity(thumbs, np.array([7]), np.array([40]), cut)
    assert alone[0] == scores[7]
