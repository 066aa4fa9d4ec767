import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from ops.dedup.fingerprint import (
    UndecodableImage,
    decode,
    fingerprint,
    phash_from_pixels,
    phash_many,
    pixel_sha256,
)


@pytest.fixture(scope="module")
def photos(fixtures_dir):
    return sorted((fixtures_dir / "dedup_photos").glob("*.[jp][pn]g"))


def _reference(image: Image.Image) -> int:
    return int(str(imagehash.phash(image)), 16)


def test_phash_equals_imagehash_on_the_fixture_photos(photos):
    images = [decode(p.read_bytes()) for p in photos]
    assert phash_many(images).tolist() == [_reference(im) for im in images]


def test_the_fingerprint_full_image_hash_equals_imagehash_with_crop_data_computed_beside_it(photos):
    """One decode gives the pixel digest, the pHash thumbnail and the detail thumbnail; the full-image pHash
    stays imagehash's, bit for bit, whatever else is derived from the same greyscale conversion."""
    found = [fingerprint(p.read_bytes()) for p in photos]
    hashes = phash_from_pixels(np.stack([f.thumb for f in found])).tolist()
    assert hashes == [_reference(decode(p.read_bytes())) for p in photos]
    assert all(f.detail.shape == (64, 64) and f.detail.dtype == np.uint8 for f in found)


def test_phash_equals_imagehash_on_degenerate_images_and_modes():
    rng = np.random.default_rng(7)
    images = [Image.new("RGB", (40, 30), (c, c, c)) for c in (0, 128, 255)]
    images += [Image.fromarray(rng.integers(0, 256, (31, 47, 3), dtype=np.uint8)) for _ in range(20)]
    images += [
        Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1))),
        Image.new("L", (9, 9), 3),
        Image.new("RGBA", (20, 20), (1, 2, 3, 0)),
        Image.new("P", (8, 8)),
        Image.new("I;16", (30, 30), 1000),
        Image.new("1", (30, 30), 1),
    ]
    assert phash_many(images).tolist() == [_reference(im) for im in images]


def test_pixel_digest_ignores_the_encoding_but_not_the_pixels(photos):
    jpeg = next(p for p in photos if p.name == "cat.jpg").read_bytes()
    image = decode(jpeg)
    png = io.BytesIO()
    image.save(png, "PNG")
    assert fingerprint(png.getvalue())[1] == fingerprint(jpeg)[1]
    changed = image.convert("RGB")
    changed.putpixel((0, 0), tuple((v + 1) % 256 for v in changed.getpixel((0, 0))))
    assert pixel_sha256(changed) != pixel_sha256(image)


def test_alpha_counts_only_when_some_pixel_is_transparent():
    rgb = Image.new("RGB", (4, 4), (10, 20, 30))
    assert pixel_sha256(rgb.convert("RGBA")) == pixel_sha256(rgb)
    see_through = rgb.convert("RGBA")
    see_through.putpixel((1, 1), (10, 20, 30, 0))
    assert pixel_sha256(see_through) != pixel_sha256(rgb)


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_undecodable_bytes_raise_one_error_type(data):
    with pytest.raises(UndecodableImage):
        fingerprint(data)


def test_truncated_jpeg_is_undecodable(photos):
    data = next(p for p in photos if p.suffix == ".jpg").read_bytes()
    with pytest.raises(UndecodableImage):
        fingerprint(data[: len(data) // 2])
