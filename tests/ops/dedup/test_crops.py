"""Crop matching: window pHashes as candidates, aligned detail correlation as the check, on the fixture photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from infra.lake import Lake
from ops.dedup import DedupConfig, build_index, dedup_shard, hash_shard
from ops.dedup.crops import N_WINDOWS, WINDOWS, detail_level, resample_matrix, similarity, window_phashes
from ops.dedup.fingerprint import DETAIL_SIDE, phash_from_pixels, thumbnails
from tests.ops.dedup.lakes import sample, write_shard

MIN_SIMILARITY = DedupConfig().min_similarity
DISTINCT = ["blip.jpg", "cat.jpg", "img1.png", "img10.jpg", "img2.jpg", "img3.jpg", "img8.jpg", "img9.jpg"]
DISTINCT += ["img_pair_1.jpg", "img_pair_2.jpg"]
CUTS = {  # (left, top, right, bottom) shares cut away; each keeps at least 90% of the area
    "centre": (0.026, 0.026, 0.026, 0.026),
    "top-left corner": (0.051, 0.051, 0.0, 0.0),
    "bottom-right corner": (0.0, 0.0, 0.051, 0.051),
    "left side": (0.10, 0.0, 0.0, 0.0),
    "left and right": (0.05, 0.0, 0.05, 0.0),
    "off-centre": (0.01, 0.06, 0.04, 0.0),
}


@pytest.fixture(scope="module")
def photos(fixtures_dir) -> dict[str, Image.Image]:
    return {name: Image.open(fixtures_dir / "dedup_photos" / name).convert("RGB") for name in DISTINCT}


def _cut(image: Image.Image, cuts: tuple[float, float, float, float]) -> Image.Image:
    left, top, right, bottom = cuts
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _detail(image: Image.Image) -> np.ndarray:
    return thumbnails(image)[1]


def _full_phash(image: Image.Image) -> int:
    return int(phash_from_pixels(thumbnails(image)[0][None])[0])


def _distance(a: int, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.uint64(a) ^ b)


def test_windows_are_crops_of_at_most_a_fifth_of_each_side_and_include_the_centre():
    assert len(WINDOWS) == N_WINDOWS == len(set(WINDOWS))
    for left, top, right, bottom in WINDOWS:
        assert min(left, top, right, bottom) >= 0 and max(left + right, top + bottom) <= 0.2
    assert (0.025, 0.025, 0.025, 0.025) in WINDOWS and (0.1, 0.1, 0.1, 0.1) in WINDOWS


def test_resampling_matches_pillow_on_a_box():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (DETAIL_SIDE, DETAIL_SIDE), dtype=np.uint8)
    box = (3.2, 0.0, 60.8, 57.6)
    ours = (
        resample_matrix(64, box[1], box[3], 32) @ image.astype(np.float32) @ resample_matrix(64, box[0], box[2], 32).T
    )
    pillow = np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.LANCZOS, box=box), dtype=np.float32)
    assert np.abs(ours - pillow).mean() < 1.0
    assert np.allclose(resample_matrix(64, 0, 57.6, 32).sum(axis=1), 1.0)


def test_a_crop_hashes_close_to_the_nearest_window_of_its_original(photos):
    """The full pHash of a crop is within the default crop radius of some window hash of the original, and the
    window whose cuts are exactly the crop's is (nearly) the crop's own pHash."""
    radius = DedupConfig().crop_radius
    for name, image in photos.items():
        windows = window_phashes(_detail(image)[None])[0]
        for cuts in CUTS.values():
            assert _distance(_full_phash(_cut(image, cuts)), windows).min() <= radius, (name, cuts)
        exact = WINDOWS.index((0.05, 0.0, 0.05, 0.0))
        assert _distance(_full_phash(_cut(image, WINDOWS[exact])), windows[exact : exact + 1])[0] <= 4, name


def test_crops_pass_the_check_and_distinct_photos_do_not(photos):
    """Each crop (then resized), started from its nearest window, correlates at the default threshold or more;
    every ordered pair of distinct photos, started from no cut and from every window, correlates below it."""
    details = {name: _detail(image) for name, image in photos.items()}
    big, small, start, same = [], [], [], []
    for name, image in photos.items():
        for cuts in CUTS.values():
            big.append(details[name])
            small.append(_detail(_cut(image, cuts).resize((300, 240), Image.Resampling.BICUBIC)))
            start.append(min(WINDOWS, key=lambda w, c=cuts: sum(abs(a - b) for a, b in zip(w, c, strict=True))))
            same.append(True)
    for a in photos:
        for b in photos:
            for cuts in [(0.0, 0.0, 0.0, 0.0), *WINDOWS] if a != b else []:
                big.append(details[a])
                small.append(details[b])
                start.append(cuts)
                same.append(False)
    scores = similarity(np.stack(big), np.stack(small), np.array(start))
    same = np.array(same)
    assert scores[same].min() >= MIN_SIMILARITY
    assert scores[~same].max() < MIN_SIMILARITY


def test_a_score_depends_on_its_pair_alone(photos):
    details = np.stack([_detail(im) for im in photos.values()])
    rng = np.random.default_rng(1)
    big, small = rng.integers(0, len(details), 700), rng.integers(0, len(details), 700)
    start = np.array(WINDOWS)[rng.integers(0, N_WINDOWS, 700)]
    together = similarity(details[big], details[small], start)
    alone = [
        similarity(details[big[k : k + 1]], details[small[k : k + 1]], start[k : k + 1])[0] for k in range(0, 700, 97)
    ]
    assert together[::97].tolist() == alone
    assert len(similarity(details[:0], details[:0], start[:0])) == 0


def _reencoded(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_detail_level_tells_blank_images_from_photos(photos):
    """A near-white page background with a faint gradient, saved as JPEG, has only encoding grain as detail, far
    below any photo's, and a re-encode leaves each level about where it was."""
    y, x = np.mgrid[0:192, 0:192].astype(np.float32)
    grey = np.round(250 + 3 * y / 191 + x / 191).astype(np.uint8)
    blank = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    blank_levels = detail_level(np.stack([_detail(_reencoded(blank, q)) for q in (95, 75, 50)]))
    photo_levels = detail_level(np.stack([_detail(_reencoded(p, 75)) for p in photos.values()]))
    assert blank_levels.max() < 0.4 < photo_levels.min()
    again = detail_level(np.stack([_detail(_reencoded(_reencoded(p, 75), 75)) for p in photos.values()]))
    np.testing.assert_allclose(again, photo_levels, rtol=0.15)


def _tiles(photos: dict[str, Image.Image], side: int = 224) -> list[Image.Image]:
    """Distinct textured images: non-overlapping tiles of the photos at full resolution, the flat ones left out
    (a flat tile has no detail to tell it from another flat tile)."""
    tiles = []
    for image in photos.values():
        for y in range(0, image.height - side + 1, side):
            for x in range(0, image.width - side + 1, side):
                tile = image.crop((x, y, x + side, y + side))
                if np.asarray(tile.convert("L"), dtype=np.float32).std() >= 30:
                    tiles.append(tile)
    return tiles


def test_distinct_textured_tiles_stay_apart_and_each_finds_its_crop(tmp_path, photos):
    """Dozens of distinct textured images in one shard and a crop (from alternating corners, re-encoded) of each
    in another: every crop joins its own tile, no two tiles join."""
    tiles = _tiles(photos)
    assert len(tiles) >= 40
    originals, crops = [], []
    for k, tile in enumerate(tiles):
        cuts = (0.05, 0.05, 0.0, 0.0) if k % 2 else (0.0, 0.0, 0.05, 0.05)
        for target, image, quality in ((originals, tile, 95), (crops, _cut(tile, cuts), 70)):
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality)
            target.append(sample(f"{'crop' if target is crops else 'tile'}{k}", out.getvalue()))
    lake = Lake(str(tmp_path / "lake"))
    write_shard(lake, "tiles", originals)
    write_shard(lake, "crops", crops)
    config = DedupConfig()
    for shard in ("tiles", "crops"):
        hash_shard(lake, shard, config)
    build_index(lake, ["tiles", "crops"], config).check()
    for shard in ("tiles", "crops"):
        dedup_shard(lake, shard, config)
    tile_rows = lake.read_parquet("dedup/tiles.parquet").to_pylist()
    crop_rows = lake.read_parquet("dedup/crops.parquet").to_pylist()
    assert all(r["kept"] for r in tile_rows)
    for tile, crop in zip(tile_rows, crop_rows, strict=True):
        assert crop["reason"] == "near_duplicate" and crop["duplicate_of"] == tile["uid"]
