"""Semantic dedup with a tiny, randomly initialised open_clip model built from a registered config."""

from __future__ import annotations

import io
import json

import numpy as np
import open_clip
import pytest
from PIL import Image

from infra.lake import Lake
from ops.dedup import DedupConfig, build_index, dedup_shard, hash_shard
from ops.dedup.layout import hashes_path
from tests.ops.dedup.lakes import sample, write_shard

TINY = "clipfoundry-tiny-vit"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("open_clip") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="module")
def lake(tmp_path_factory, fixtures_dir, tiny_model) -> Lake:
    """Two shards: cat and img8 in one, a pixel-identical PNG of cat plus blip in the other."""
    photos = fixtures_dir / "dedup_photos"
    cat = Image.open(photos / "cat.jpg")
    png = io.BytesIO()
    cat.save(png, "PNG")
    lake = Lake(str(tmp_path_factory.mktemp("semantic") / "lake"))
    write_shard(lake, "s0", [sample(n, (photos / n).read_bytes()) for n in ("cat.jpg", "img8.jpg")])
    write_shard(
        lake, "s1", [sample("cat-png", png.getvalue(), ext="png"), sample("blip", (photos / "blip.jpg").read_bytes())]
    )
    config = DedupConfig(embed_model=tiny_model)
    for shard in ("s0", "s1"):
        hash_shard(lake, shard, config).check()
    return lake


def _rows(lake: Lake, config: DedupConfig) -> list[dict]:
    build_index(lake, ["s0", "s1"], config).check()
    rows = []
    for shard in ("s0", "s1"):
        dedup_shard(lake, shard, config).check()
        rows += lake.read_parquet(f"dedup/{shard}.parquet").to_pylist()
    return rows


def test_embeddings_are_stored_unit_norm_with_the_model_name(lake, tiny_model):
    table = lake.read_parquet(hashes_path("s0"))
    vectors = np.asarray(table["embedding"].to_pylist(), dtype=np.float32)
    assert vectors.shape == (2, TINY_CONFIG["embed_dim"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert table.schema.metadata[b"embed_model"] == tiny_model.encode()


def test_identical_images_cluster_and_distinct_ones_do_not_at_a_strict_threshold(lake, tiny_model):
    rows = _rows(lake, DedupConfig(embed_model=tiny_model, semantic_threshold=0.999999))
    assert sum(not r["kept"] for r in rows) == 1
    assert {r["cluster_size"] for r in rows} == {1, 2}


def test_a_permissive_threshold_links_everything_semantically(lake, tiny_model):
    """At cosine >= -1 every pair is linked: the images that are not exact copies become semantic duplicates."""
    rows = _rows(lake, DedupConfig(embed_model=tiny_model, semantic_threshold=-1.0))
    reasons = sorted(r["reason"] for r in rows)
    assert reasons == ["", "exact_duplicate", "semantic_duplicate", "semantic_duplicate"] or reasons == [
        "",
        "semantic_duplicate",
        "semantic_duplicate",
        "semantic_duplicate",
    ]
    assert {r["cluster_size"] for r in rows} == {4}


def test_hashes_without_embeddings_are_refused(lake, tiny_model, tmp_path):
    with pytest.raises(ValueError, match="hashed with embeddings"):
        build_index(lake, ["s0", "s1"], DedupConfig(embed_model="ViT-B-32"))
