"""The product-photo generator: reproducible, distinct images, and as crowded in pHash space as the real kind."""

from __future__ import annotations

import numpy as np

from infra.synthetic.products import images, jpegs, render
from ops.dedup.crops import window_phashes
from ops.dedup.fingerprint import fingerprint, phash_from_pixels
from ops.dedup.hamming import nearest_within


def test_a_product_is_the_same_whichever_range_draws_it():
    whole = render(4, 0, 150, 40)
    assert (render(4, 70, 30, 40) == whole[70:100]).all()
    assert (render(4, 0, 150, 40) == whole).all()
    assert not (render(5, 0, 10, 40) == whole[:10]).all()


def test_products_are_distinct_photos_on_a_light_background():
    pixels = render(1, 0, 200, 64).astype(np.int16)
    flat = pixels.reshape(len(pixels), -1)
    assert len(np.unique(flat, axis=0)) == len(pixels)
    corners = pixels[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.min() >= 200  # background, or its shadow, at every corner
    object_share = (np.abs(pixels - pixels[:, :1, :1]).max(axis=-1) > 40).mean(axis=(1, 2))
    assert object_share.min() > 0.05 and object_share.max() < 0.6


def test_their_hashes_crowd_together():
    """Look-alike products: another product's window pHash lies within the crop radius of an image's pHash
    several times as often as for unrelated (random) hashes, which almost never meet."""
    prints = [fingerprint(b) for b in jpegs(2, 300, 128)]
    phash = phash_from_pixels(np.stack([p.thumb for p in prints]))
    windows = window_phashes(np.stack([p.detail for p in prints]))
    rng = np.random.default_rng(0)
    unrelated = rng.integers(0, 2**64, windows.size, dtype=np.uint64)
    own = np.repeat(np.arange(len(prints)), windows.shape[1])
    found = {}
    for name, base in (("products", windows.ravel()), ("unrelated", unrelated)):
        i, _, _, _ = nearest_within(phash, 6, base, 50, own, exclude=np.arange(len(prints)))
        found[name] = len(i) / len(prints)
    assert found["products"] > 1.0 > 20 * found["unrelated"]
    assert len(list(images(2, 3, 32))) == 3
