"""The global dedup index: every decodable sample of every shard, compared against all the others at once.

Samples are the nodes of one graph. Edges join two samples with the same uid (the same URL and text) or the same
canonical pixel digest (exact); with a *checked* pHash candidate (near); and, when embeddings are configured,
with cosine similarity >= the threshold (semantic). pHash candidates are full-image pHashes within
``phash_radius``, identical ones included (distinct look-alikes, such as products photographed on a plain
background, often share a pHash), and crops: one image's full pHash within ``crop_radius`` of a window pHash of
another (:mod:`ops.dedup.crops`). A candidate becomes an edge when the two detail thumbnails, aligned, correlate
at ``min_similarity`` or more.

The work per image is bounded, so the index grows in proportion to the images even where look-alikes crowd the
hash space: each image keeps its ``candidates_per_image`` closest other clusters (multi-index search with a
per-query limit, :func:`ops.dedup.hamming.nearest_within`), and checks run in rounds in which every image
checks its closest candidate not yet joined to it, at most ``checks_per_image`` rounds; links found in one round
join their clusters before the next, so a pair already joined through others is never checked. Order and ties
follow the samples' own ranking, never the order shards arrive. The report counts candidates, checks, what the
bounds left unchecked, and the seconds of each phase. With ``min_similarity=None`` full-image candidates (and
identical pHashes) are edges unchecked and there is no crop matching (the behaviour before crops).

A cluster is a connected component, as in NeMo Curator's fuzzy dedup; components are computed at three nested
levels (exact ⊂ near ⊂ semantic), which names each drop by the closest level that joins it to its survivor. Flat
images (thumbnail contrast below ``min_contrast``) get no pHash edges: their pHash is the same constant pattern
whatever their colour. Components are chained: a cluster may hold two images that were never compared.

Survivors are chosen by a total order on the samples themselves, never on the order shards arrive: the largest
image (most pixels) first, then the smallest uid, then shard and key. So the same sample survives whatever the
shard order, and a new shard changes an old shard's decisions only when it brings a better copy of one of its
images; re-running ``dedup_shard`` on the old shards (cheap: no pixels are read) picks that up.

Samples that match an eval image (same pixels; or pHash distance <= ``eval_radius``, or a crop candidate either
way round, checked like the index's) are dropped first and take no part in the clustering, so a benchmark image
never survives as a cluster's representative.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from infra.lake import Lake
from ops.dedup import reasons as R
from ops.dedup.config import DedupConfig
from ops.dedup.crops import (
    CANDIDATES_PER_CLUSTER,
    EVAL_CHECKS,
    FINGERPRINT_VERSION,
    N_WINDOWS,
    WINDOWS,
    coarse,
    coarse_similarity,
    similarity,
)
from ops.dedup.evalsets import eval_fingerprints
from ops.dedup.fingerprint import DETAIL_SIDE
from ops.dedup.hamming import nearest_within, pairs_within
from ops.dedup.layout import SUMMARY, decisions_path, details_path, hashes_path
from ops.report import StageReport
from ops.stage import publish_if_changed

_CHECK_SLICE = 8192
_DECIDING = ["uid", "kept", "reason", "duplicate_of", "duplicate_of_shard"]

DECISIONS = pa.schema(
    [
        ("uid", pa.string()),
        ("key", pa.string()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
        ("duplicate_of", pa.string()),
        ("duplicate_of_shard", pa.string()),
        ("cluster_size", pa.int64()),
    ]
)


def _load(lake: Lake, shards: list[str], config: DedupConfig) -> pa.Table:
    """The decodable samples of all shards, with their shard name; refuses hashes it cannot compare (made with
    another embedding model, or without this version's crop windows when candidates are checked)."""
    columns = ["uid", "key", "width", "height", "pixel_sha256", "phash", "contrast", "reason"]
    if config.verified:
        columns.append("window_phash")
    tables = []
    for shard in shards:
        table = lake.read_parquet(hashes_path(shard))
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        columns_here = list(columns)
        if config.semantic:
            made = (meta.get("embed_model") or None, meta.get("embed_pretrained") or None)
            if made != (config.embed_model, config.embed_pretrained) or "embedding" not in table.column_names:
                raise ValueError(f"shard {shard!r} was hashed with embeddings from {made}; re-run hash_shard")
            columns_here.append("embedding")
        if config.verified and meta.get("fingerprint_version") != FINGERPRINT_VERSION:
            made = meta.get("fingerprint_version", "1 (no crop windows)")
            raise ValueError(
                f"shard {shard!r} was hashed with fingerprint version {made}, not {FINGERPRINT_VERSION}; re-run "
                "hash_shard (or set min_similarity=None and crop_radius=None to compare full-image pHashes only)"
            )
        table = table.select(columns_here).filter(pc.equal(table["reason"], ""))
        tables.append(table.append_column("shard", pa.array([shard] * table.num_rows, pa.string())))
    return pa.concat_tables(tables) if tables else pa.table({c: [] for c in [*columns, "shard"]})


def _windows(table: pa.Table) -> np.ndarray:
    """The window pHashes of the loaded samples, shape (n, N_WINDOWS)."""
    if not table.num_rows:
        return np.zeros((0, N_WINDOWS), dtype=np.uint64)
    flat = table["window_phash"].combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.uint64)
    if len(flat) != table.num_rows * N_WINDOWS:
        raise ValueError(f"window pHashes are not {N_WINDOWS} per image; re-run hash_shard")
    return flat.reshape(table.num_rows, N_WINDOWS)


def _details(lake: Lake, table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """The detail thumbnails of some loaded samples, (len(rows), 64, 64) uint8, read shard by shard."""
    out = np.zeros((len(rows), DETAIL_SIDE, DETAIL_SIDE), dtype=np.uint8)
    if not len(rows):
        return out
    shards = np.asarray(table["shard"].take(pa.array(rows)).to_pylist(), dtype=object)
    keys = table["key"].take(pa.array(rows))
    for shard in sorted(set(shards)):
        mine = np.flatnonzero(shards == shard)
        if not lake.exists(details_path(shard)):
            raise ValueError(f"shard {shard!r} has no detail thumbnails ({details_path(shard)}); re-run hash_shard")
        stored = lake.read_parquet(details_path(shard))
        at = pc.index_in(keys.take(pa.array(mine)), value_set=stored["key"])
        if at.null_count:
            raise ValueError(f"the detail thumbnails of shard {shard!r} lack some of its images; re-run hash_shard")
        out[mine] = _pixels(stored["detail"].take(at))
    return out


def _pixels(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size binary column of detail thumbnails as an (n, 64, 64) uint8 array."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    size = DETAIL_SIDE * DETAIL_SIDE
    if not len(array):
        return np.zeros((0, DETAIL_SIDE, DETAIL_SIDE), dtype=np.uint8)
    data = np.frombuffer(array.buffers()[1], dtype=np.uint8)[array.offset * size : (array.offset + len(array)) * size]
    return data.reshape(len(array), DETAIL_SIDE, DETAIL_SIDE)


def _codes(values: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Dense integer codes of a column's values, and how many distinct values there are."""
    encoded = pc.dictionary_encode(values.combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def _components(n_nodes: int, a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    rows, cols = np.concatenate(a), np.concatenate(b)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n_nodes, n_nodes))
    return connected_components(graph, directed=False)[1]


def _contamination(lake: Lake, table: pa.Table, evals: pa.Table, config: DedupConfig) -> np.ndarray:
    """For each sample, the row of an eval image it copies (-1 if none): same pixels first, then the same pHash
    (the closest eval row), then the best checked candidate (full-image within ``eval_radius``, or a crop either
    way round)."""
    match = np.full(table.num_rows, -1, dtype=np.int64)
    if not evals.num_rows or not table.num_rows:
        return match
    mine = np.flatnonzero(table["contrast"].to_numpy() >= config.min_contrast)
    theirs = np.flatnonzero(evals["contrast"].to_numpy() >= config.min_contrast)
    ours_ph, their_ph = table["phash"].to_numpy()[mine], evals["phash"].to_numpy()[theirs]
    qi, ej, dist = pairs_within(ours_ph, config.eval_radius, their_ph)
    qi, ej = mine[qi], theirs[ej]
    if config.verified:
        unchecked = dist == 0
        checked = _eval_checks(
            lake, table, evals, config, (mine, theirs), qi[~unchecked], ej[~unchecked], dist[~unchecked]
        )
        match[checked[0]] = checked[1]
        qi, ej, dist = qi[unchecked], ej[unchecked], dist[unchecked]
    order = np.lexsort((ej, dist, qi))
    first = np.unique(qi[order], return_index=True)[1]
    match[qi[order][first]] = ej[order][first]
    same = pc.index_in(table["pixel_sha256"], value_set=evals["pixel_sha256"])
    exact = pc.is_valid(same).to_numpy(zero_copy_only=False)
    match[exact] = same.filter(pc.is_valid(same)).to_numpy().astype(np.int64)
    return match


def _eval_checks(
    lake: Lake,
    table: pa.Table,
    evals: pa.Table,
    config: DedupConfig,
    textured: tuple[np.ndarray, np.ndarray],
    full_q: np.ndarray,
    full_e: np.ndarray,
    full_d: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples and the eval row each best matches among its checked candidates (highest similarity): the given
    full-image candidates and, with ``crop_radius``, crops either way round between the textured rows."""
    mine, theirs = textured
    sample, other, dist, window = [full_q], [full_e], [full_d], [np.full(len(full_q), -1)]
    eval_is_big = [np.ones(len(full_q), dtype=bool)]
    if config.crop_radius is not None:
        ours_ph, their_ph = table["phash"].to_numpy()[mine], evals["phash"].to_numpy()[theirs]
        their_win = _windows(evals).take(theirs, axis=0)
        our_win = _windows(table).take(mine, axis=0)
        q, b, d = pairs_within(ours_ph, config.crop_radius, their_win.ravel())  # the sample is a crop
        sample.append(mine[q])
        other.append(theirs[b // N_WINDOWS])
        dist.append(d)
        window.append(b % N_WINDOWS)
        eval_is_big.append(np.ones(len(q), dtype=bool))
        q, b, d = pairs_within(their_ph, config.crop_radius, our_win.ravel())  # the eval image is a crop
        sample.append(mine[b // N_WINDOWS])
        other.append(theirs[q])
        dist.append(d)
        window.append(b % N_WINDOWS)
        eval_is_big.append(np.zeros(len(q), dtype=bool))
    sample, other, dist = np.concatenate(sample), np.concatenate(other), np.concatenate(dist)
    window, eval_is_big = np.concatenate(window), np.concatenate(eval_is_big)
    order = np.lexsort((window, ~eval_is_big, other, dist, sample))
    sample, other, window, eval_is_big = sample[order], other[order], window[order], eval_is_big[order]
    keep = _first_per_group(sample, EVAL_CHECKS)
    sample, other, window, eval_is_big = sample[keep], other[keep], window[keep], eval_is_big[keep]
    rows, their_rows = np.unique(sample), np.unique(other)
    details = np.concatenate([_details(lake, table, rows), _pixels(evals["detail"].take(pa.array(their_rows)))])
    at_sample, at_other = np.searchsorted(rows, sample), len(rows) + np.searchsorted(their_rows, other)
    big, small = np.where(eval_is_big, at_other, at_sample), np.where(eval_is_big, at_sample, at_other)
    score = _similarities(details, big, small, window)
    good = score >= config.min_similarity
    sample, other, score = sample[good], other[good], score[good]
    order = np.lexsort((other, -score, sample))
    first = np.unique(sample[order], return_index=True)[1]
    return sample[order][first], other[order][first]


def _similarities(details: np.ndarray, big: np.ndarray, small: np.ndarray, window: np.ndarray) -> np.ndarray:
    """:func:`similarity` of ``details[big]`` and ``details[small]`` from each candidate's window, a slice at a
    time so that the candidates' thumbnails are never all copied at once."""
    out = np.zeros(len(big), dtype=np.float32)
    for s in range(0, len(big), _CHECK_SLICE):
        e = s + _CHECK_SLICE
        out[s:e] = similarity(details[big[s:e]], details[small[s:e]], _cuts(window[s:e]))
    return out


def _cuts(window: np.ndarray) -> np.ndarray:
    """The starting crop box of each candidate: its window's cuts, or none (-1: full image against full image)."""
    table = np.array([(0.0, 0.0, 0.0, 0.0), *WINDOWS])
    return table[np.asarray(window) + 1]


def _first_per_group(groups: np.ndarray, limit: int, columns: tuple[np.ndarray, ...] | None = None):
    """Positions of the first ``limit`` rows of each run of equal values in the sorted ``groups``; or, given
    ``columns``, those rows of each column."""
    if not len(groups):
        first = np.zeros(0, dtype=np.int64)
    else:
        starts = np.r_[True, groups[1:] != groups[:-1]]
        begin = np.maximum.accumulate(np.where(starts, np.arange(len(groups)), 0))
        first = np.flatnonzero(np.arange(len(groups)) - begin < limit)
    return first if columns is None else tuple(c[first] for c in columns)


def _candidates(
    table: pa.Table, config: DedupConfig, rank: np.ndarray, clusters: np.ndarray, textured: np.ndarray
) -> tuple[tuple[np.ndarray, ...], dict[str, int]]:
    """Candidate pairs ``(owner, small, big, dist, window)`` between different ``clusters``, sorted by owner and
    then closest first, and counts for the report.

    The owners are the best-ranked textured image of each distinct (cluster, pHash). Each keeps its
    ``candidates_per_image`` closest other clusters among the full-image pHashes within ``phash_radius``
    (identical ones included: distinct look-alike products often share a pHash; ``small`` is the lower-ranked
    image) and as many among the window pHashes within ``crop_radius`` (``small`` is the owner, ``big`` the image
    whose window matched), each cluster by its ``CANDIDATES_PER_CLUSTER`` closest entries. Ties go to the
    better-ranked cluster and image, so the choice depends on the samples alone, never on the order shards
    arrive."""
    limit = config.candidates_per_image
    by_rank = textured[np.argsort(rank[textured], kind="stable")]
    every = np.asarray(table["phash"].to_numpy(zero_copy_only=False), dtype=np.uint64)
    phash = every[by_rank]
    order = np.lexsort((phash, clusters[by_rank]))
    new_run = (np.diff(clusters[by_rank][order]) != 0) | (np.diff(phash[order]) != 0)
    owners = by_rank[np.sort(order[np.r_[True, new_run][: len(order)]])]
    cluster_rank = np.full(int(clusters.max(initial=0)) + 1, len(rank), dtype=np.int64)
    np.minimum.at(cluster_rank, clusters, rank)
    queries, mine = every[owners], clusters[owners]
    search = {"priority": cluster_rank, "per_group": CANDIDATES_PER_CLUSTER, "exclude": mine}
    i, j, d, capped = nearest_within(queries, config.phash_radius, phash, limit, clusters[by_rank], **search)
    a, b = owners[i], by_rank[j]
    a_first = rank[a] < rank[b]
    owner, small, big = [a], [np.where(a_first, b, a)], [np.where(a_first, a, b)]
    dist, window = [d], [np.full(len(i), -1)]
    stats = {"candidates_full": len(i), "candidates_crop": 0}
    if config.crop_radius is not None:
        inside = _windows(table).take(by_rank, axis=0).ravel()
        group = clusters[np.repeat(by_rank, N_WINDOWS)]
        q, at, d, capped_crop = nearest_within(queries, config.crop_radius, inside, limit, group, **search)
        owner.append(owners[q])
        small.append(owners[q])
        big.append(by_rank[at // N_WINDOWS])
        dist.append(d)
        window.append(at % N_WINDOWS)
        stats["candidates_crop"] = len(q)
        capped = capped | capped_crop
    stats["images_with_candidates_capped"] = int(capped.sum())
    owner, small, big = np.concatenate(owner), np.concatenate(small), np.concatenate(big)
    dist, window = np.concatenate(dist), np.concatenate(window)
    order = np.lexsort((window, rank[big], rank[small], dist, rank[owner]))
    same_check = (small * len(rank) + big) * (N_WINDOWS + 1) + window + 1  # found from both sides
    order = order[np.sort(np.unique(same_check[order], return_index=True)[1])]
    return (owner[order], small[order], big[order], dist[order], window[order]), stats


def _checked_links(
    lake: Lake, table: pa.Table, config: DedupConfig, clusters: np.ndarray, candidates: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray, dict[str, int | float]]:
    """The candidate pairs that become near edges, and counts and seconds for the report.

    Each owner's candidates are ordered by pHash distance, then by :func:`coarse_similarity`, a cheap guess that
    puts the true copy first among crowded look-alikes at one distance far more often than the samples' order.
    Rounds: in each, every owner whose candidates are not all joined to it yet checks its likeliest remaining one,
    all owners at once; passing pairs join their clusters before the next round, so a candidate already joined
    through other links is never checked. After ``checks_per_image`` rounds every owner has spent its checks:
    the work is at most that many checks per image, however crowded the hashes. (Capping the checks between two
    clusters as well, at two, saved 15% of the checks on product photos and lost 0.7% of the crop pairs of the
    perturbation set, whose second or third window is sometimes the one that aligns.)"""
    owner, small, big, dist, window = candidates
    comp = clusters.copy()
    start = time.perf_counter()
    live = np.flatnonzero(comp[small] != comp[big])
    owner, small, big, dist, window = owner[live], small[live], big[live], dist[live], window[live]
    rows = np.unique(np.concatenate([small, big]))
    details = _details(lake, table, rows)
    stats: dict[str, int | float] = {"details_s": time.perf_counter() - start, "detail_images": len(rows)}
    start = time.perf_counter()
    prior = coarse_similarity(coarse(details), np.searchsorted(rows, big), np.searchsorted(rows, small), _cuts(window))
    run = np.cumsum(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else owner
    order = np.lexsort((-prior, dist, run))
    owner, small, big, window = owner[order], small[order], big[order], window[order]
    stats["order_s"] = time.perf_counter() - start
    start = time.perf_counter()
    pending = np.arange(len(owner))
    links: list[np.ndarray] = []
    checked = crop_links = rounds = 0
    while len(pending) and rounds < config.checks_per_image:
        rounds += 1
        pick = pending[_first_per_group(owner[pending], 1)]
        score = _similarities(
            details, np.searchsorted(rows, big[pick]), np.searchsorted(rows, small[pick]), window[pick]
        )
        good = pick[score >= config.min_similarity]
        checked += len(pick)
        crop_links += int((window[good] >= 0).sum())
        links.append(good)
        comp = _merge(comp, small[good], big[good])
        rest = np.setdiff1d(pending, pick, assume_unique=True)
        pending = rest[comp[small[rest]] != comp[big[rest]]]
    good = np.concatenate([np.zeros(0, dtype=np.int64), *links])
    stats.update(
        {
            "check_s": time.perf_counter() - start,
            "check_rounds": rounds,
            "checked_pairs": checked,
            "checked_links": len(good),
            "checked_crop_links": crop_links,
            "candidates_left_unchecked": len(pending),
            "images_out_of_checks": len(np.unique(owner[pending])),
        }
    )
    return small[good], big[good], stats


def _merge(comp: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cluster labels after joining the clusters of each pair (a, b)."""
    if not len(a):
        return comp
    labels = int(comp.max()) + 1
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (comp[a], comp[b])), shape=(labels, labels))
    return connected_components(graph, directed=False)[1][comp]


def _semantic_pairs(embeddings: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with cosine >= threshold (exact inner-product range search; vectors are unit-norm)."""
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    lims, _, found = index.range_search(embeddings, float(np.nextafter(np.float32(threshold), np.float32(-1))))
    rows = np.repeat(np.arange(len(embeddings)), np.diff(lims).astype(np.int64))
    keep = rows < found
    return rows[keep], found[keep].astype(np.int64)


def _publish_decisions(lake: Lake, shard: str, table: pa.Table) -> bool:
    """Publish a shard's decisions; True when what its ``dedup`` stage keeps or drops changed.

    A new shard whose images join an old shard's cluster leaves the old survivor kept and only grows its
    ``cluster_size``: the file records the new size, but the old shard's stages need not re-run for it (its
    ``dedup`` table keeps the size as of its last run).
    """
    rel = decisions_path(shard)
    old = lake.read_parquet(rel) if lake.exists(rel) else None
    publish_if_changed(lake, rel, table)
    if old is None or not set(_DECIDING) <= set(old.column_names):
        return True
    return not old.select(_DECIDING).equals(table.select(_DECIDING))


def build_index(lake: Lake, shards: list[str], config: DedupConfig) -> StageReport:
    """Decide every decodable sample of ``shards`` and write ``dedup/index/``; the summary is written last."""
    shards = sorted(set(shards))
    report = StageReport(stage="dedup_index", shard="all")
    timings: dict[str, float] = {}
    with report.timed():
        start = time.perf_counter()
        everything = _load(lake, shards, config)
        evals, eval_stats = eval_fingerprints(lake, tuple(config.eval_sets))
        timings["load_s"] = time.perf_counter() - start

        start = time.perf_counter()
        eval_match = _contamination(lake, everything, evals, config)
        contaminated = eval_match >= 0
        table = everything.filter(pa.array(~contaminated))
        timings["eval_s"] = time.perf_counter() - start

        start = time.perf_counter()
        n = table.num_rows
        uid_code, n_uid = _codes(table["uid"])
        sha_code, n_sha = _codes(table["pixel_sha256"])
        occ = np.arange(n)
        pixels = table["width"].to_numpy().astype(np.int64) * table["height"].to_numpy().astype(np.int64)
        uids = np.asarray(table["uid"].to_pylist(), dtype=object)
        shard_col = np.asarray(table["shard"].to_pylist(), dtype=object)
        keys = np.asarray(table["key"].to_pylist(), dtype=object)
        rank = np.empty(n, dtype=np.int64)
        rank[np.lexsort((keys, shard_col, uids, -pixels))] = occ

        textured = occ[table["contrast"].to_numpy() >= config.min_contrast]
        nodes = n + n_uid + n_sha
        edges_a, edges_b = [occ, occ], [n + uid_code, n + n_uid + sha_code]
        exact = _components(nodes, edges_a, edges_b)[:n]
        timings["cluster_s"] = time.perf_counter() - start
        if config.verified:
            start = time.perf_counter()
            candidates, stats = _candidates(table, config, rank, exact, textured)
            timings["candidates_s"] = time.perf_counter() - start
            link_a, link_b, checking = _checked_links(lake, table, config, exact, candidates)
            timings.update({k: checking.pop(k) for k in ("details_s", "order_s", "check_s")})
            edges_a.append(link_a)
            edges_b.append(link_b)
            report.extra.update(stats | checking)
        else:
            start = time.perf_counter()
            unique_ph, ph_code = np.unique(table["phash"].to_numpy()[textured], return_inverse=True)
            ph_i, ph_j, _ = pairs_within(unique_ph, config.phash_radius)
            timings["candidates_s"] = time.perf_counter() - start
            report.extra["candidates_full"] = len(ph_i)
            edges_a += [textured, nodes + ph_i]
            edges_b += [nodes + ph_code.ravel(), nodes + ph_j]
            nodes += len(unique_ph)
        start = time.perf_counter()
        near = _components(nodes, edges_a, edges_b)[:n]
        timings["cluster_s"] += time.perf_counter() - start
        if config.semantic and n:
            start = time.perf_counter()
            vectors = np.asarray(table["embedding"].to_pylist(), dtype=np.float32)
            sem_i, sem_j = _semantic_pairs(vectors, config.semantic_threshold)
            final = _components(nodes, [*edges_a, sem_i], [*edges_b, sem_j])[:n]
            timings["semantic_s"] = time.perf_counter() - start
            report.extra["semantic_pairs"] = len(sem_i)
        else:
            final = near

        best_rank = np.full(final.max() + 1 if n else 0, n, dtype=np.int64)
        np.minimum.at(best_rank, final, rank)
        by_rank = np.empty(n, dtype=np.int64)
        by_rank[rank] = occ
        survivor = by_rank[best_rank[final]] if n else occ
        kept = survivor == occ
        same_exact = exact == exact[survivor]
        reason = np.where(
            same_exact,
            np.where(uid_code == uid_code[survivor], R.DUPLICATE_PAIR, R.EXACT_DUPLICATE),
            np.where(near == near[survivor], R.NEAR_DUPLICATE, R.SEMANTIC_DUPLICATE),
        ).astype(object)
        reason[kept] = ""
        sizes = np.bincount(final)[final] if n else occ

        decided = {
            "uid": uids,
            "key": keys,
            "shard": shard_col,
            "kept": kept,
            "reason": reason,
            "duplicate_of": np.where(kept, None, uids[survivor]),
            "duplicate_of_shard": np.where(kept, None, shard_col[survivor]),
            "cluster_size": sizes,
        }
        dirty = everything.filter(pa.array(contaminated))
        hit = eval_match[contaminated]
        dirty_decided = {
            "uid": np.asarray(dirty["uid"].to_pylist(), dtype=object),
            "key": np.asarray(dirty["key"].to_pylist(), dtype=object),
            "shard": np.asarray(dirty["shard"].to_pylist(), dtype=object),
            "kept": np.zeros(len(hit), dtype=bool),
            "reason": np.full(len(hit), R.EVAL_CONTAMINATION, dtype=object),
            "duplicate_of": np.asarray(evals["path"].take(pa.array(hit)).to_pylist(), dtype=object),
            "duplicate_of_shard": np.asarray(
                ["eval:" + s for s in evals["eval_set"].take(pa.array(hit)).to_pylist()], dtype=object
            ),
            "cluster_size": np.ones(len(hit), dtype=np.int64),
        }
        merged = {k: np.concatenate([decided[k], dirty_decided[k]]) for k in decided}
        reconfigured = not lake.exists(SUMMARY) or lake.read_json(SUMMARY).get("config_digest") != config.digest()
        affected = []
        start = time.perf_counter()
        shard_code = np.searchsorted(np.asarray(shards, dtype=object), merged["shard"])
        by_shard = np.argsort(shard_code, kind="stable")
        bounds = np.searchsorted(shard_code[by_shard], np.arange(len(shards) + 1))
        for s, shard in enumerate(shards):
            mine = by_shard[bounds[s] : bounds[s + 1]]
            table = pa.table({f.name: pa.array(merged[f.name][mine].tolist(), f.type) for f in DECISIONS}, DECISIONS)
            if _publish_decisions(lake, shard, table) or reconfigured:
                affected.append(shard)
        timings["write_s"] = time.perf_counter() - start
        report.count(merged["kept"].tolist(), merged["reason"].tolist())

    histogram = Counter(np.bincount(final).tolist()) if n else Counter()
    histogram.pop(0, None)
    report.extra.update(
        {
            "shards": len(shards),
            "clusters": int(sum(histogram.values())),
            "clusters_with_duplicates": int(sum(v for k, v in histogram.items() if k > 1)),
            "largest_cluster": int(max(histogram, default=0)),
            "eval_images": evals.num_rows,
            **eval_stats,
            **{k: round(v, 4) for k, v in timings.items()},
        }
    )
    report.check()
    report.extra["affected_shards"] = affected
    summary = {
        "shards": shards,
        "config": config.to_dict(),
        "config_digest": config.digest(),
        "cluster_sizes": {str(k): v for k, v in sorted(histogram.items())},
        "report": report.to_dict(),
    }
    report.extra["cluster_sizes"] = summary["cluster_sizes"]
    lake.write_json(SUMMARY, summary)
    return report


def cluster_size_histogram(lake: Lake) -> dict[int, int]:
    """Number of clusters of each size (1 = a sample with no duplicate) in the current index, for plotting."""
    return {int(k): int(v) for k, v in lake.read_json(SUMMARY)["cluster_sizes"].items()}
