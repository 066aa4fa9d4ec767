"""A shard as the stages before quality leave it: crawl table, download ledger and webdataset tar, in a lake.

Each sample is described by a small dict so a test reads as its own fixture; images are solid colours (a few
bytes of JPEG each), sizes recorded in the ledger are what the heuristics see, independent of the pixels.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass

import pyarrow as pa
from PIL import Image

from infra.lake import Lake
from ops.layout import table_path


@dataclass(frozen=True)
class Sample:
    uid: str
    text: str = "a red bicycle leaning on a blue wall"
    lang: str = "en"
    width: int = 640
    height: int = 480
    image: str = "ok"  # ok | corrupt (bytes that are not an image) | missing (its tar sample holds no image)
    downloaded: bool = True


def jpeg(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    colour = ((seed * 67) % 256, (seed * 131) % 256, (seed * 29) % 256)
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def write_shard(lake: Lake, shard: str, samples: list[Sample], image_size: tuple[int, int] = (40, 30)) -> None:
    n = len(samples)
    lake.write_parquet(
        table_path("crawl", shard),
        pa.table(
            {
                "uid": [s.uid for s in samples],
                "url": [f"https://example.com/{s.uid}.jpg" for s in samples],
                "text": [s.text for s in samples],
                "lang": [s.lang for s in samples],
                "kept": [True] * n,
                "reason": [""] * n,
            }
        ),
    )
    keys = [f"{i:09d}" if s.downloaded else None for i, s in enumerate(samples)]
    lake.write_parquet(
        table_path("download", shard),
        pa.table(
            {
                "uid": [s.uid for s in samples],
                "key": keys,
                "kept": [s.downloaded for s in samples],
                "reason": ["" if s.downloaded else "http_client_error" for s in samples],
                "width": pa.array([min(s.width, 512) if s.downloaded else None for s in samples], pa.int64()),
                "height": pa.array([min(s.height, 512) if s.downloaded else None for s in samples], pa.int64()),
                "original_width": pa.array([s.width if s.downloaded else None for s in samples], pa.int64()),
                "original_height": pa.array([s.height if s.downloaded else None for s in samples], pa.int64()),
            }
        ),
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i, (s, key) in enumerate(zip(samples, keys, strict=True)):
            if key is None:
                continue
            members = {
                "jpg": jpeg(i, image_size) if s.image == "ok" else b"not an image",
                "txt": s.text.encode(),
                "json": json.dumps({"uid": s.uid, "key": key}).encode(),
            }
            if s.image == "missing":
                del members["jpg"]
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    lake.write_bytes(f"download/{shard}.tar", buf.getvalue())


def write_stage(lake: Lake, stage: str, shard: str, kept: dict[str, bool]) -> None:
    """A minimal upstream table (uid, kept, reason) such as curation or dedup writes."""
    lake.write_parquet(
        table_path(stage, shard),
        pa.table({"uid": list(kept), "kept": list(kept.values()), "reason": ["" if k else "x" for k in kept.values()]}),
    )


def many(n: int, prefix: str = "u") -> list[Sample]:
    """``n`` samples that pass DataComp's basic filter, each with its own caption."""
    return [Sample(f"{prefix}{i:03d}", text=f"photo {prefix}{i} of a red bicycle") for i in range(n)]
