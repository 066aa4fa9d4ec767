"""All pairs of 64-bit hashes within a Hamming radius, without comparing every pair (multi-index hashing).

Split each hash into four 16-bit blocks. If two hashes differ in at most ``r`` bits, then by pigeonhole some
block differs in at most ``r // 4`` bits. So for each block we look up, in a sorted copy of that block's values,
every value within ``r // 4`` bit flips of the query's block (a 65,536-entry offset table makes each lookup one
array read), and verify each candidate with a full popcount.
The result is exact (every pair within ``r``, nothing beyond), and the work grows with the number of candidates,
not with n²: at radius < 4 a candidate must share a whole 16-bit block, at radius < 8 a block within one flip.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

MAX_RADIUS = 15
_BLOCKS = 4
_BITS = 16
_CHUNK = 4_000_000


def _masks(flips: int) -> np.ndarray:
    """All 16-bit masks with at most ``flips`` bits set."""
    out = [0]
    for k in range(1, flips + 1):
        out.extend(sum(1 << b for b in combo) for combo in combinations(range(_BITS), k))
    return np.array(out, dtype=np.uint64)


def pairs_within(
    queries: np.ndarray, radius: int, base: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j, distance)`` with ``popcount(queries[i] ^ base[j]) <= radius``.

    Without ``base`` it is a self-join of ``queries`` and each unordered pair comes once, with ``i < j``.
    Pairs are unique and sorted by (i, j).
    """
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"Hamming radius must be in 0..{MAX_RADIUS}, got {radius}")
    q = np.ascontiguousarray(queries, dtype=np.uint64)
    self_join = base is None
    b = q if self_join else np.ascontiguousarray(base, dtype=np.uint64)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    if len(q) and len(b):
        masks = _masks(radius // _BLOCKS)
        for block in range(_BLOCKS):
            shift = np.uint64(block * _BITS)
            qk = (q >> shift) & np.uint64(0xFFFF)
            bk = (b >> shift) & np.uint64(0xFFFF)
            order = np.argsort(bk, kind="stable")
            starts = np.zeros((1 << _BITS) + 1, dtype=np.int64)
            np.cumsum(np.bincount(bk.astype(np.int64), minlength=1 << _BITS), out=starts[1:])
            for mask in masks:
                probe = (qk ^ mask).astype(np.int64)
                lo, hi = starts[probe], starts[probe + 1]
                hit = np.flatnonzero(hi > lo)
                for i, j in _expand(hit, lo[hit], hi[hit], order):
                    keep = i < j if self_join else np.ones(len(i), dtype=bool)
                    i, j = i[keep], j[keep]
                    close = np.bitwise_count(q[i] ^ b[j]) <= radius
                    found_i.append(i[close])
                    found_j.append(j[close])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    key = np.unique(np.concatenate(found_i).astype(np.int64) * len(b) + np.concatenate(found_j))
    i, j = np.divmod(key, len(b))
    return i, j, np.bitwise_count(q[i] ^ b[j]).astype(np.int64)


def _expand(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, order: np.ndarray):
    """Yield (query index, base index) arrays for every hit, a few million candidates at a time."""
    counts = hi - lo
    ends = np.cumsum(counts)
    start = 0
    while start < len(rows):
        offset = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, offset + _CHUNK, side="right")), start + 1)
        c = counts[start:stop]
        total = int(c.sum())
        first = np.repeat(np.cumsum(c) - c, c)
        pos = np.repeat(lo[start:stop], c) + (np.arange(total) - first)
        yield np.repeat(rows[start:stop], c), order[pos]
        start = stop
