"""Building download-shaped shards in a test lake: a webdataset tar and a ledger, as ops.download writes them."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import pyarrow as pa

from infra.lake import Lake
from ops.download import LEDGER_SCHEMA
from ops.uid import pair_uid


def sample(name: str, data: bytes, ext: str = "jpg", url: str | None = None, text: str | None = None) -> dict:
    """One downloaded sample; the uid follows from (url, text) as in the crawl stage."""
    url = url or f"https://example.org/{name}.{ext}"
    text = text or f"a photo called {name}"
    return {"name": name, "uid": pair_uid(url, text), "url": url, "text": text, "data": data, "ext": ext}


def write_shard(lake: Lake, shard: str, samples: list[dict], failed: int = 0, missing: int = 0) -> list[str]:
    """Publish ``download/<shard>.tar`` and ``download/<shard>.parquet``; returns the kept uids in order.

    ``failed`` extra rows are dropped by download (not in the tar, not in dedup); ``missing`` extra rows are
    kept by the ledger, and their tar samples hold no image.
    """
    rows = {f.name: [] for f in LEDGER_SCHEMA}
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "shard.tar"
        with tarfile.open(tar_path, "w") as tar:
            for i, s in enumerate(samples):
                key = f"{i:09d}"
                meta = {"uid": s["uid"], "url": s["url"], "caption": s["text"], "key": key, "status": "success"}
                for suffix, payload in (
                    (s["ext"], s["data"]),
                    ("txt", s["text"].encode()),
                    ("json", json.dumps(meta).encode()),
                ):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                _row(rows, s["uid"], key, s["url"], True, "")
            for i in range(missing):  # a sample without its image file: absent, not damaged
                tar.addfile(tarfile.TarInfo(f"{len(samples) + i:09d}.txt"), io.BytesIO(b""))
        for i in range(failed):
            _row(rows, pair_uid(f"https://example.org/failed/{shard}/{i}", "x"), None, "u", False, "timeout")
        for i in range(missing):
            key = f"{len(samples) + i:09d}"
            _row(rows, pair_uid(f"https://example.org/missing/{shard}/{i}", "x"), key, "u", True, "")
        lake.put_file(tar_path, f"download/{shard}.tar")
    lake.write_parquet(f"download/{shard}.parquet", pa.Table.from_pydict(rows, schema=LEDGER_SCHEMA))
    return [u for u, k in zip(rows["uid"], rows["kept"], strict=True) if k]


def _row(rows: dict, uid: str, key: str | None, url: str, kept: bool, reason: str) -> None:
    values = {"uid": uid, "key": key, "url": url, "kept": kept, "reason": reason}
    for name, column in rows.items():
        column.append(values.get(name))
