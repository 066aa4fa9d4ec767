"""The global dedup index: every decodable sample of every shard, compared against all the others at once.

Samples are the nodes of one graph. Edges join two samples with the same uid (the same URL and text) or the same
canonical pixel digest (exact), with pHash distance <= the radius (near), and, when embeddings are configured,
with cosine similarity >= the threshold (semantic). A cluster is a connected component, as in NeMo Curator's
fuzzy dedup; components are computed at three nested levels (exact ⊂ near ⊂ semantic), which names each drop by
the closest level that joins it to its survivor. Flat images (thumbnail contrast below ``min_contrast``) get no
pHash edges: their pHash is the same constant pattern whatever their colour. Components are chained: a cluster
may hold two images further apart than the radius if others link them, which is why the radius is kept small.

Survivors are chosen by a total order on the samples themselves, never on the order shards arrive: the largest
image (most pixels) first, then the smallest uid, then shard and key. So the same sample survives whatever the
shard order, and a new shard changes an old shard's decisions only when it brings a better copy of one of its
images; re-running ``dedup_shard`` on the old shards (cheap: no pixels are read) picks that up.

Samples that match an eval image (same pixels, or pHash distance <= ``eval_radius``) are dropped first and take
no part in the clustering, so a benchmark image never survives as a cluster's representative.
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
from ops.dedup.evalsets import eval_fingerprints
from ops.dedup.hamming import pairs_within
from ops.dedup.layout import SUMMARY, decisions_path, hashes_path
from ops.report import StageReport

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
    """The decodable samples of all shards, with their shard name; refuses hashes made with another model."""
    columns = ["uid", "key", "width", "height", "pixel_sha256", "phash", "contrast", "reason"]
    tables = []
    for shard in shards:
        table = lake.read_parquet(hashes_path(shard))
        if config.semantic:
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            made = (meta.get("embed_model") or None, meta.get("embed_pretrained") or None)
            if made != (config.embed_model, config.embed_pretrained) or "embedding" not in table.column_names:
                raise ValueError(f"shard {shard!r} was hashed with embeddings from {made}; re-run hash_shard")
            columns_here = [*columns, "embedding"]
        else:
            columns_here = columns
        table = table.select(columns_here).filter(pc.equal(table["reason"], ""))
        tables.append(table.append_column("shard", pa.array([shard] * table.num_rows, pa.string())))
    return pa.concat_tables(tables) if tables else pa.table({c: [] for c in [*columns, "shard"]})


def _codes(values: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Dense integer codes of a column's values, and how many distinct values there are."""
    encoded = pc.dictionary_encode(values.combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def _components(n_nodes: int, a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    rows, cols = np.concatenate(a), np.concatenate(b)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n_nodes, n_nodes))
    return connected_components(graph, directed=False)[1]


def _contamination(table: pa.Table, evals: pa.Table, config: DedupConfig) -> np.ndarray:
    """For each sample, the row of an eval image it copies (-1 if none): same pixels first, else the closest."""
    match = np.full(table.num_rows, -1, dtype=np.int64)
    if not evals.num_rows or not table.num_rows:
        return match
    mine = np.flatnonzero(table["contrast"].to_numpy() >= config.min_contrast)
    theirs = np.flatnonzero(evals["contrast"].to_numpy() >= config.min_contrast)
    qi, ej, dist = pairs_within(table["phash"].to_numpy()[mine], config.eval_radius, evals["phash"].to_numpy()[theirs])
    qi, ej = mine[qi], theirs[ej]
    order = np.lexsort((ej, dist, qi))
    first = np.unique(qi[order], return_index=True)[1]
    match[qi[order][first]] = ej[order][first]
    same = pc.index_in(table["pixel_sha256"], value_set=evals["pixel_sha256"])
    exact = pc.is_valid(same).to_numpy(zero_copy_only=False)
    match[exact] = same.filter(pc.is_valid(same)).to_numpy().astype(np.int64)
    return match


def _semantic_pairs(embeddings: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with cosine >= threshold (exact inner-product range search; vectors are unit-norm)."""
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    lims, _, found = index.range_search(embeddings, float(np.nextafter(np.float32(threshold), np.float32(-1))))
    rows = np.repeat(np.arange(len(embeddings)), np.diff(lims).astype(np.int64))
    keep = rows < found
    return rows[keep], found[keep].astype(np.int64)


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
        eval_match = _contamination(everything, evals, config)
        contaminated = eval_match >= 0
        table = everything.filter(pa.array(~contaminated))
        n = table.num_rows
        uid_code, n_uid = _codes(table["uid"])
        sha_code, n_sha = _codes(table["pixel_sha256"])
        occ = np.arange(n)
        textured = occ[table["contrast"].to_numpy() >= config.min_contrast]
        unique_ph, ph_code = np.unique(table["phash"].to_numpy()[textured], return_inverse=True)
        sha_base, ph_base = n + n_uid, n + n_uid + n_sha
        nodes = ph_base + len(unique_ph)
        edges_a = [occ, occ]
        edges_b = [n + uid_code, sha_base + sha_code]
        exact = _components(nodes, edges_a, edges_b)[:n]
        ph_i, ph_j, _ = pairs_within(unique_ph, config.phash_radius)
        edges_a += [textured, ph_base + ph_i]
        edges_b += [ph_base + ph_code.ravel(), ph_base + ph_j]
        near = _components(nodes, edges_a, edges_b)[:n]
        timings["hash_search_s"] = time.perf_counter() - start
        report.extra["near_pairs_distinct_hashes"] = len(ph_i)
        if config.semantic and n:
            start = time.perf_counter()
            vectors = np.asarray(table["embedding"].to_pylist(), dtype=np.float32)
            sem_i, sem_j = _semantic_pairs(vectors, config.semantic_threshold)
            final = _components(nodes, [*edges_a, sem_i], [*edges_b, sem_j])[:n]
            timings["semantic_s"] = time.perf_counter() - start
            report.extra["semantic_pairs"] = len(sem_i)
        else:
            final = near

        pixels = table["width"].to_numpy().astype(np.int64) * table["height"].to_numpy().astype(np.int64)
        uids = np.asarray(table["uid"].to_pylist(), dtype=object)
        shard_col = np.asarray(table["shard"].to_pylist(), dtype=object)
        keys = np.asarray(table["key"].to_pylist(), dtype=object)
        rank = np.empty(n, dtype=np.int64)
        rank[np.lexsort((keys, shard_col, uids, -pixels))] = occ
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
        for shard in shards:
            mine = merged["shard"] == shard
            lake.write_parquet(
                decisions_path(shard),
                pa.table({f.name: pa.array(merged[f.name][mine].tolist(), f.type) for f in DECISIONS}, DECISIONS),
            )
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
