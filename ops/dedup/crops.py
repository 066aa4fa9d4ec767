"""Crop-robust near-duplicate matching: window pHashes find candidates, an aligned detail comparison decides.

A pHash only tolerates about 1% of misalignment: a crop that keeps 90% of an image moves it by 2-16 bits, as far
as two distinct look-alike images are apart. So crops are found in two steps.

* Candidates. Every image also gets the pHashes of :data:`WINDOWS`: fixed sub-windows (each edge cut by 0, 2.5,
  5 or 10% of its side, the cut area at most 11%, plus the centre 80%), each computed from the image's 64x64
  greyscale *detail* thumbnail (squashed to a square like pHash's) through separable Lanczos resampling to
  32x32 and the same DCT. When ``B`` is a crop of ``A``, the full-image pHash of ``B`` lies close to the
  window hash of ``A`` nearest to the crop box. Only full-versus-window pairs are compared (never window
  against window): that finds ``B`` inside ``A`` whichever of the two is the query, while window-to-window
  matches would add look-alike pairs without finding more crops.
* Check. The candidate window is only a first guess of the crop box. :func:`similarity` refines it on the two
  detail thumbnails (coarse-to-fine Gauss-Newton over the four box edges, Lucas-Kanade style, with brightness
  and contrast normalised away) and scores the aligned pair by the normalised correlation of their band-pass
  images (difference of Gaussians, sigma 0.7 and 2 pixels of 64). Low-frequency layout is what a pHash already
  matched, and look-alike images share it; the detail that separates them (a plane from a boat on the same sky)
  only correlates once the crop box is found to a fraction of a pixel, while the finest grain (JPEG blocks,
  resampling) is left out. The index checks full-image pHash candidates the same way (from the uncut box).

The detail thumbnails are stored beside the hashes (``dedup/details/<shard>.parquet``, 4 KiB an image) so that
the index, which reads no pixels, can check; it reads them only for the images of candidate pairs.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.ndimage import gaussian_filter

from ops.dedup.fingerprint import DETAIL_SIDE, HASH_SIZE, hash_bits

_THUMB = 32
_AXIS_CUTS = ((0.0, 0.0), (0.0, 0.05), (0.05, 0.0), (0.025, 0.025), (0.0, 0.1), (0.1, 0.0), (0.05, 0.05))
_MIN_WINDOW_AREA = 0.89


def _windows() -> tuple[tuple[float, float, float, float], ...]:
    """(left, top, right, bottom) cuts as fractions of the side."""
    found = [
        (left, top, right, bottom)
        for (left, right) in _AXIS_CUTS
        for (top, bottom) in _AXIS_CUTS
        if (1 - left - right) * (1 - top - bottom) >= _MIN_WINDOW_AREA and (left, top, right, bottom) != (0, 0, 0, 0)
    ]
    return (*found, (0.1, 0.1, 0.1, 0.1))


WINDOWS = _windows()
N_WINDOWS = len(WINDOWS)
# Recorded in every hash table: tables of another version lack (or disagree on) the window hashes and details.
_GEOMETRY = hashlib.sha256(repr(WINDOWS).encode()).hexdigest()[:8]
FINGERPRINT_VERSION = f"2:windows={_GEOMETRY}:detail={DETAIL_SIDE}-bilinear"
CANDIDATES_PER_CLUSTER = 2  # an image's candidates in one other cluster of the index: its closest entries
EVAL_CHECKS = 4  # candidates checked per sample against the eval sets, closest first
MAX_CUT = 0.35  # alignment never moves an edge further in than this share of the side
_LEVELS = ((16, 6), (32, 4), (DETAIL_SIDE, 4))  # (side, Gauss-Newton iterations), coarse to fine
# A pair scoring below this once aligned at 32 px is not refined at full resolution (60% of the check's time):
# measured on product photos, 0.06% of the pairs that end at 0.97 or more score under 0.6 there, 84% of the
# look-alikes do.
EARLY_REJECT = 0.6
_CHUNK = 512


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


def resample_matrix(size: int, start: float, stop: float, out: int) -> np.ndarray:
    """(out, size) weights that resample the span [start, stop) of a ``size``-pixel axis to ``out`` pixels with
    an antialiased Lanczos-3 filter, as Pillow's resize with a box does."""
    scale = (stop - start) / out
    support = max(scale, 1.0)
    centres = start + (np.arange(out) + 0.5) * scale
    weights = _lanczos(((np.arange(size) + 0.5)[None, :] - centres[:, None]) / support)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _dct_rows(n: int) -> np.ndarray:
    """The first HASH_SIZE rows of scipy's unnormalised DCT-II matrix on ``n`` points."""
    k = np.arange(HASH_SIZE)[:, None]
    return 2 * np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n))


def _window_operators() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resampling to 32x32 and the low-frequency DCT folded into one (8, 64) operator per distinct row span and
    per distinct column span, stacked; and for each window, which row and column span it takes."""
    s, dct = DETAIL_SIDE, _dct_rows(_THUMB)
    ys = sorted({(t, b) for _, t, _, b in WINDOWS})
    xs = sorted({(left, r) for left, _, r, _ in WINDOWS})
    rows = np.concatenate([dct @ resample_matrix(s, t * s, s - b * s, _THUMB) for t, b in ys])
    cols = np.concatenate([dct @ resample_matrix(s, left * s, s - r * s, _THUMB) for left, r in xs])
    which = np.array([(ys.index((t, b)), xs.index((left, r))) for left, t, r, b in WINDOWS])
    return rows.astype(np.float32), cols.astype(np.float32), which


_ROW_OPS, _COL_OPS, _WHICH = _window_operators()


def window_phashes(details: np.ndarray) -> np.ndarray:
    """The pHash of every window of every image (n, N_WINDOWS) from the (n, 64, 64) detail thumbnails: each
    window resampled to 32x32 (Lanczos) and its 8x8 low-frequency DCT block against its median, as pHash does.
    Two small matrix products per image; the bits need not equal Pillow's resize of a crop, only be close."""
    d = np.asarray(details, dtype=np.float32)
    n = len(d)
    if n == 0:
        return np.zeros((0, N_WINDOWS), dtype=np.uint64)
    h = HASH_SIZE
    # one product of fixed shape per image, so an image's bits never depend on the rest of its batch
    both = np.matmul(np.matmul(_ROW_OPS, d), _COL_OPS.T)  # (n, row span * 8 + k, col span * 8 + l)
    both = both.reshape(n, -1, h, _COL_OPS.shape[0] // h, h)  # (n, row span, k, col span, l)
    low = both[:, _WHICH[:, 0], :, _WHICH[:, 1], :]  # (window, n, k, l)
    low = low.transpose(1, 0, 2, 3).reshape(n * N_WINDOWS, h * h)
    return hash_bits(low).reshape(n, N_WINDOWS)


def _sample(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear samples of each image on its own separable grid (xs, ys: (m, s) pixel coordinates), and the
    x and y derivatives of the interpolant there."""
    m, side, _ = img.shape
    xs = np.clip(xs, 0, side - 1)
    ys = np.clip(ys, 0, side - 1)
    x0 = np.minimum(xs.astype(np.int64), side - 2)
    y0 = np.minimum(ys.astype(np.int64), side - 2)
    fx = (xs - x0).astype(np.float32)[:, None, :]
    fy = (ys - y0).astype(np.float32)[:, :, None]
    idx = (np.arange(m) * side * side)[:, None, None] + y0[:, :, None] * side + x0[:, None, :]
    flat = img.reshape(-1)
    a, b, c, d = flat[idx], flat[idx + 1], flat[idx + side], flat[idx + side + 1]
    top = a + (b - a) * fx
    bottom = c + (d - c) * fx
    return top + (bottom - top) * fy, (b - a) * (1 - fy) + (d - c) * fy, bottom - top


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=(1, 2), keepdims=True)
    return x / np.maximum(np.sqrt((x * x).sum(axis=(1, 2), keepdims=True)), 1e-6)


def _grid(box: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = ((np.arange(side) + 0.5) / side)[None, :]
    xs = (box[:, 0:1] + t * (box[:, 2:3] - box[:, 0:1])) * side - 0.5
    ys = (box[:, 1:2] + t * (box[:, 3:4] - box[:, 1:2])) * side - 0.5
    return xs, ys, t[0].astype(np.float32)


def _weigh(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` over the last axis of ``x``, summed element by element so that each row's result does not depend
    on how many rows are in the batch (a BLAS product may block, and round, differently for another batch)."""
    return (x[..., :, None] * w).sum(axis=-2)


def _refine(big: np.ndarray, small: np.ndarray, box: np.ndarray, iterations: int) -> np.ndarray:
    """Gauss-Newton steps on the box edges (x0, y0, x1, y1 as fractions of ``big``) that bring ``big`` sampled
    over the box closest to ``small``, both normalised to zero mean and unit norm.

    The sample at output pixel (i, j) moves with the edges by (1 - t_j, t_j) along x and (1 - t_i, t_i) along y,
    so the 4x4 normal equations reduce to sums of five image products against those separable weights; no
    (pixels x 4) Jacobian is built."""
    m, side, _ = big.shape
    n = side * side
    target = _unit(small)
    xi, yi = [0, 2], [1, 3]  # parameter order: x0, y0, x1, y1
    for _ in range(iterations):
        xs, ys, t = _grid(box, side)
        value, gx, gy = _sample(big, xs, ys)
        value = value - value.mean(axis=(1, 2), keepdims=True)
        norm = np.maximum(np.sqrt((value * value).sum(axis=(1, 2))), 1e-6)
        scale = (side / norm)[:, None, None]
        gx, gy = gx * scale, gy * scale
        residual = target - value / norm[:, None, None]
        w = np.stack([1 - t, t], axis=1)  # (side, 2): weights of the near and far edge
        ww = (w[:, :, None] * w[:, None, :]).reshape(side, 4)
        hess = np.empty((m, 4, 4), dtype=np.float64)
        hess[:, np.ix_(xi, xi)[0], np.ix_(xi, xi)[1]] = _weigh((gx * gx).sum(axis=1), ww).reshape(m, 2, 2)
        hess[:, np.ix_(yi, yi)[0], np.ix_(yi, yi)[1]] = _weigh((gy * gy).sum(axis=2), ww).reshape(m, 2, 2)
        xy = _weigh(_weigh(gx * gy, w).transpose(0, 2, 1), w)  # (m, 2 x-edges, 2 y-edges)
        hess[:, np.ix_(xi, yi)[0], np.ix_(xi, yi)[1]] = xy
        hess[:, np.ix_(yi, xi)[0], np.ix_(yi, xi)[1]] = xy.transpose(0, 2, 1)
        mean = np.empty((m, 4), dtype=np.float64)
        mean[:, xi], mean[:, yi] = _weigh(gx.sum(axis=1), w) / n, _weigh(gy.sum(axis=2), w) / n
        hess -= n * mean[:, :, None] * mean[:, None, :]
        hess += 1e-4 * np.eye(4)
        grad = np.empty((m, 4), dtype=np.float64)
        grad[:, xi] = _weigh((gx * residual).sum(axis=1), w)
        grad[:, yi] = _weigh((gy * residual).sum(axis=2), w)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        box = box + np.clip(step, -0.05, 0.05)
        box[:, :2] = np.clip(box[:, :2], 0.0, MAX_CUT)
        box[:, 2:] = np.clip(box[:, 2:], 1.0 - MAX_CUT, 1.0)
    return box


def _pool(x: np.ndarray, side: int) -> np.ndarray:
    f = x.shape[1] // side
    return x.reshape(len(x), side, f, side, f).mean(axis=(2, 4)) if f > 1 else x


_BAND = (0.7, 2.0)  # Gaussian sigmas, in detail pixels, of the band-pass the check correlates


def _band(x: np.ndarray) -> np.ndarray:
    """Difference of Gaussians: the detail between the finest grain (JPEG noise, resampling) and the layout."""
    fine, coarse = _BAND
    return gaussian_filter(x, (0, fine, fine), mode="nearest") - gaussian_filter(x, (0, coarse, coarse), mode="nearest")


def detail_level(details: np.ndarray) -> np.ndarray:
    """Standard deviation, in grey levels, of the band-pass detail :func:`similarity` correlates, per (n, 64, 64)
    detail thumbnail. Encoding and resampling grain alone measure about 0.15-0.3 (a blank tile saved as JPEG):
    an image at that level holds nothing the check, or a pHash, can tell from another blank image of about the
    same colour, so near-duplicate matching cannot apply to it and only exact copies are found."""
    return _band(np.asarray(details, dtype=np.float32)).std(axis=(1, 2))


def _score(big: np.ndarray, small: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Band-pass correlation of ``small`` with ``big`` sampled over ``box``."""
    xs, ys, _ = _grid(box, DETAIL_SIDE)
    return (_unit(_band(_sample(big, xs, ys)[0])) * _unit(_band(small))).sum(axis=(1, 2))


def _similarity_chunk(big: np.ndarray, small: np.ndarray, window: np.ndarray) -> np.ndarray:
    big = big.astype(np.float32)
    small = small.astype(np.float32)
    left, top, right, bottom = window.T
    box = np.stack([left, top, 1 - right, 1 - bottom], axis=1).astype(np.float64)
    for side, iterations in _LEVELS[:-1]:
        box = _refine(_pool(big, side), _pool(small, side), box, iterations)
    score = _score(big, small, box)
    going = np.flatnonzero(score >= EARLY_REJECT)
    if len(going):
        box = _refine(big[going], small[going], box[going], _LEVELS[-1][1])
        score[going] = _score(big[going], small[going], box)
    return score


COARSE_SIDE = 16  # thumbnails of the coarse score that orders candidates before any check


def coarse(details: np.ndarray) -> np.ndarray:
    """The (n, 16, 16) float32 thumbnails :func:`coarse_similarity` compares, pooled once per image."""
    return _pool(np.asarray(details, dtype=np.float32), COARSE_SIDE)


def coarse_similarity(thumbs: np.ndarray, big: np.ndarray, small: np.ndarray, window: np.ndarray) -> np.ndarray:
    """A cheap guess of :func:`similarity` for the pairs ``(thumbs[big], thumbs[small])`` of :func:`coarse`
    thumbnails: the big one sampled over the candidate ``window`` box, unaligned, correlated with the small one.
    Too coarse to decide (look-alikes score high too), but among candidates at the same pHash distance it finds
    the true copy far more often than the samples' order would: on 20,000 generated product photos, a copy's
    original was an owner's first candidate for 63% of the copies with distance then this score, 41% with
    distance alone (its first 8: 83% against 69%). Each pair's score depends on that pair alone."""
    window = np.asarray(window, dtype=np.float64).reshape(-1, 4)
    out = np.zeros(len(window), dtype=np.float32)
    step = 16 * _CHUNK
    for s in range(0, len(window), step):
        left, top, right, bottom = window[s : s + step].T
        xs, ys, _ = _grid(np.stack([left, top, 1 - right, 1 - bottom], axis=1), COARSE_SIDE)
        sampled = _sample(thumbs[big[s : s + step]], xs, ys)[0]
        out[s : s + step] = (_unit(sampled) * _unit(thumbs[small[s : s + step]])).sum(axis=(1, 2))
    return out


def similarity(big: np.ndarray, small: np.ndarray, window: np.ndarray) -> np.ndarray:
    """How well ``small`` (m, 64, 64 detail thumbnails) matches a crop of ``big`` (the same), starting from the
    candidate ``window`` cuts (m, 4: left, top, right, bottom fractions): the correlation, in [-1, 1], of the
    high-pass details once the crop box is aligned. Each pair's score depends on that pair alone."""
    window = np.asarray(window, dtype=np.float64).reshape(-1, 4)
    if not len(window):
        return np.zeros(0, dtype=np.float32)
    parts = [
        _similarity_chunk(big[s : s + _CHUNK], small[s : s + _CHUNK], window[s : s + _CHUNK])
        for s in range(0, len(window), _CHUNK)
    ]
    return np.concatenate(parts).astype(np.float32)
