"""Pairs of 64-bit hashes within a Hamming radius, without comparing every pair (multi-index hashing).

Split each hash into four 16-bit blocks. If two hashes differ in at most ``r`` bits, then by pigeonhole some
block differs in at most ``r // 4`` bits. So for each block we look up, in a sorted copy of that block's values,
every value within ``r // 4`` bit flips of the query's block (a 65,536-entry offset table makes each lookup one
array read), and verify each candidate with a full popcount.
The result is exact (every pair within ``r``, nothing beyond), and the work grows with the number of candidates,
not with n²: at radius < 4 a candidate must share a whole 16-bit block, at radius < 8 a block within one flip.

Blocks are searched one at a time and queries a few million raw candidates at a time, so memory holds one block's
sorted order and one slice of candidates beside the result. :func:`nearest_within` bounds the result too: on
look-alike images (products on a plain background) pHashes crowd together and the pairs within a radius grow
with the square of the images, while the closest ``limit`` per query grow with the images.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    return np.array(out, dtype=np.int64)


def _block(codes: np.ndarray, block: int) -> np.ndarray:
    return ((codes >> np.uint64(block * _BITS)) & np.uint64(0xFFFF)).astype(np.int64)


def _raw(q: np.ndarray, b: np.ndarray, radius: int, self_join: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Verified (query, base) index pairs within ``radius``, block by block and a few million raw candidates at a
    time; a pair sharing several blocks comes once per block. In a self-join only pairs with query < base come."""
    masks = _masks(radius // _BLOCKS)
    for block in range(_BLOCKS):
        qk, bk = _block(q, block), _block(b, block)
        order = np.argsort(bk.astype(np.uint16), kind="stable")
        starts = np.zeros((1 << _BITS) + 1, dtype=np.int64)
        np.cumsum(np.bincount(bk, minlength=1 << _BITS), out=starts[1:])
        load = np.zeros(len(q), dtype=np.int64)
        for mask in masks:
            probe = qk ^ mask
            load += starts[probe + 1] - starts[probe]
        ends = np.cumsum(load)
        first = 0
        while first < len(q):
            done = ends[first - 1] if first else 0
            last = max(int(np.searchsorted(ends, done + _CHUNK, side="right")), first + 1)
            rows = np.arange(first, last)
            for mask in masks:
                probe = qk[first:last] ^ mask
                lo, hi = starts[probe], starts[probe + 1]
                counts = hi - lo
                hit = counts > 0
                i, j = _expand(rows[hit], lo[hit], counts[hit], order)
                if self_join:
                    i, j = i[i < j], j[i < j]
                close = np.bitwise_count(q[i] ^ b[j]) <= radius
                yield i[close], j[close]
            first = last


def _expand(rows: np.ndarray, lo: np.ndarray, counts: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query index, base index) for every base entry in each query's bucket."""
    total = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.repeat(lo, counts) + (np.arange(total) - first)
    return np.repeat(rows, counts), order[pos]


def _prepare(queries: np.ndarray, radius: int, base: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"Hamming radius must be in 0..{MAX_RADIUS}, got {radius}")
    q = np.ascontiguousarray(queries, dtype=np.uint64)
    return q, q if base is None else np.ascontiguousarray(base, dtype=np.uint64)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty, empty


def pairs_within(
    queries: np.ndarray, radius: int, base: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j, distance)`` with ``popcount(queries[i] ^ base[j]) <= radius``.

    Without ``base`` it is a self-join of ``queries`` and each unordered pair comes once, with ``i < j``.
    Pairs are unique and sorted by (i, j).
    """
    q, b = _prepare(queries, radius, base)
    if not len(q) or not len(b):
        return _empty()
    keys = [i * len(b) + j for i, j in _raw(q, b, radius, base is None)]
    if not keys:
        return _empty()
    i, j = np.divmod(np.unique(np.concatenate(keys)), len(b))
    return i, j, np.bitwise_count(q[i] ^ b[j]).astype(np.int64)


def nearest_within(
    queries: np.ndarray,
    radius: int,
    base: np.ndarray,
    limit: int,
    groups: np.ndarray | None = None,
    priority: np.ndarray | None = None,
    per_group: int = 1,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each query, its ``limit`` closest groups of base entries within ``radius``: ``(i, j, distance, capped)``.

    ``groups[j]`` names the group of base entry ``j`` (default: each entry its own). A group comes with its
    ``per_group`` closest entries (ties: the lower entry) and is ranked by the closest, then by
    ``priority[group]`` (lower first; default the group id), then by group id, so what is kept depends on the
    hashes and priorities alone. ``capped[i]`` says that query ``i`` had more groups within the radius than
    ``limit``. ``exclude[i]`` is a group query ``i`` never gets (its own). Pairs come sorted by query, then
    distance, then group rank, then entry.
    """
    q, b = _prepare(queries, radius, base)
    capped = np.zeros(len(q), dtype=bool)
    if not len(q) or not len(b) or limit <= 0:
        return (*_empty(), capped)
    group_of = np.arange(len(b), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    rank = np.arange(int(group_of.max()) + 1) if priority is None else np.asarray(priority, dtype=np.int64)
    best_i, best_j = _empty()[:2]
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    held = 0
    for step in (*_raw(q, b, radius, self_join=False), None):
        if step is not None:
            found_i.append(step[0])
            found_j.append(step[1])
            held += len(step[0])
        if held >= _CHUNK or (step is None and held):
            i, j = np.concatenate([best_i, *found_i]), np.concatenate([best_j, *found_j])
            if exclude is not None:
                i, j = i[group_of[j] != exclude[i]], j[group_of[j] != exclude[i]]
            best_i, best_j, over = _closest(q, b, i, j, (group_of, rank), limit, per_group)
            capped |= over
            found_i, found_j, held = [], [], 0
    return best_i, best_j, np.bitwise_count(q[best_i] ^ b[best_j]).astype(np.int64), capped


def _position_in_runs(*keys: np.ndarray) -> np.ndarray:
    """For rows sorted by ``keys``, each row's position within its run of equal keys."""
    n = len(keys[0])
    if not n:
        return np.zeros(0, dtype=np.int64)
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    for key in keys:
        starts[1:] |= key[1:] != key[:-1]
    return np.arange(n) - np.maximum.accumulate(np.where(starts, np.arange(n), 0))


def _closest(
    q: np.ndarray,
    b: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    grouping: tuple[np.ndarray, np.ndarray],
    limit: int,
    per_group: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best entries of the ``limit`` best groups per query among the pairs (i, j), and which queries had
    more groups. Reducing slice by slice is exact: an entry among the best of all pairs is among the best of any
    set of pairs that holds it."""
    group_of, rank = grouping
    d = np.bitwise_count(q[i] ^ b[j])
    g = group_of[j]
    order = np.lexsort((j, d, g, i))
    i, j, d, g = i[order], j[order], d[order], g[order]
    keep = _position_in_runs(i, j) == 0  # a pair found through several blocks comes once per block
    i, j, d, g = i[keep], j[keep], d[keep], g[keep]
    keep = _position_in_runs(i, g) < per_group
    i, j, d, g = i[keep], j[keep], d[keep], g[keep]
    head = _position_in_runs(i, g) == 0
    by_best = np.lexsort((g[head], rank[g[head]], d[head], i[head]))
    chosen = np.zeros(int(head.sum()), dtype=bool)
    chosen[by_best] = _position_in_runs(i[head][by_best]) < limit
    capped = np.bincount(i[head], minlength=len(q)) > limit
    keep = chosen[np.cumsum(head) - 1]
    i, j, d, g = i[keep], j[keep], d[keep], g[keep]
    order = np.lexsort((j, g, rank[g], d, i))
    return i[order], j[order], capped
