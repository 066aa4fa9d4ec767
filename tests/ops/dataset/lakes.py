"""A small lake with every stage's tables and download tars, built in the test (no network, no img2dataset)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from infra.lake import Lake
from ops.layout import table_path
from ops.uid import pair_uid

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}


def image_bytes(colour: str, rng: np.random.Generator, size: int = 32) -> bytes:
    pixels = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def build_lake(root: Path, n_shards: int = 2, per_shard: int = 40, seed: int = 0, later_stages: bool = True) -> Lake:
    """Shards with known drops at every stage; captions name the image's colour ("a red square 3")."""
    lake = Lake(str(root))
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    for s in range(n_shards):
        shard = f"shard-{s:03d}"
        rows = []
        for i in range(per_shard):
            colour = names[(s * per_shard + i) % len(names)]
            url = f"http://example.test/{shard}/{i}.jpg"
            text = f"a {colour} square {i}"
            rows.append((pair_uid(url, text), url, text, colour, i))
        crawl_kept = [i % 10 != 9 for i in range(per_shard)]
        lake.write_parquet(
            table_path("crawl", shard),
            pa.table(
                {
                    "uid": [r[0] for r in rows],
                    "url": [r[1] for r in rows],
                    "text": [r[2] for r in rows],
                    "page_url": [f"http://example.test/{shard}/page.html"] * per_shard,
                    "kept": crawl_kept,
                    "reason": ["" if k else "no_text" for k in crawl_kept],
                }
            ),
        )
        todo = [r for r, k in zip(rows, crawl_kept, strict=True) if k]
        dl_kept = [r[4] % 10 != 8 for r in todo]
        samples = []
        for n, (r, k) in enumerate(zip(todo, dl_kept, strict=True)):
            if k:
                files = {
                    "jpg": image_bytes(r[3], rng),
                    "txt": r[2].encode(),
                    "json": json.dumps({"uid": r[0], "key": f"{n:09d}", "url": r[1]}).encode(),
                }
                samples.append((f"{n:09d}", files))
        staging = root / f".staging-{shard}.tar"
        write_tar(staging, samples)
        lake.put_file(staging, f"download/{shard}.tar")
        lake.write_parquet(
            table_path("download", shard),
            pa.table(
                {
                    "uid": [r[0] for r in todo],
                    "key": [f"{n:09d}" if k else None for n, k in enumerate(dl_kept)],
                    "kept": dl_kept,
                    "reason": ["" if k else "timeout" for k in dl_kept],
                }
            ),
        )
        if not later_stages:
            continue
        got = [r for r, k in zip(todo, dl_kept, strict=True) if k]
        dedup_kept = [r[4] % 10 != 7 for r in got]
        _stage(lake, "dedup", shard, got, dedup_kept, "exact")
        after = [r for r, k in zip(got, dedup_kept, strict=True) if k]
        p_keep = [0.0 if r[4] % 10 == 6 else (0.5 if r[3] == "red" else 1.0) for r in after]
        cur_kept = [p > 0 and (p == 1.0 or r[4] % 3 == 0) for r, p in zip(after, p_keep, strict=True)]
        lake.write_parquet(
            table_path("curation", shard),
            pa.table(
                {
                    "uid": [r[0] for r in after],
                    "p_keep": p_keep,
                    "kept": cur_kept,
                    "reason": [
                        "" if k else ("no_match" if p == 0 else "balanced")
                        for k, p in zip(cur_kept, p_keep, strict=True)
                    ],
                }
            ),
        )
        after = [r for r, k in zip(after, cur_kept, strict=True) if k]
        q_kept = [r[4] % 10 != 5 for r in after]
        _stage(lake, "quality", shard, after, q_kept, "clip_score")
        after = [r for r, k in zip(after, q_kept, strict=True) if k]
        lake.write_parquet(
            table_path("recaption", shard),
            pa.table(
                {
                    "uid": [r[0] for r in after],
                    "synthetic_text": [f"a photo of a {r[3]} square" if r[4] % 3 else None for r in after],
                    "captioner": ["tiny"] * len(after),
                    "kept": [True] * len(after),
                    "reason": [""] * len(after),
                }
            ),
        )
    return lake


def _stage(lake: Lake, stage: str, shard: str, rows: list, kept: list[bool], reason: str) -> None:
    lake.write_parquet(
        table_path(stage, shard),
        pa.table({"uid": [r[0] for r in rows], "kept": kept, "reason": ["" if k else reason for k in kept]}),
    )
