"""Downloaded shards of given images in a test lake, made by the real crawl and download ops
(:mod:`tests.ops.lakes`)."""

from __future__ import annotations

import io

from PIL import Image

from infra.lake import Lake
from ops import graph
from ops.ledger import kept_uids
from ops.uid import pair_uid
from tests.ops.lakes import Pair, ingest, jpeg, rewrite_tar


def sample(name: str, data: bytes, ext: str = "jpg", url: str | None = None, text: str | None = None) -> dict:
    """One downloaded sample; the uid follows from (url, text) as in the crawl stage."""
    url = url or f"https://example.org/{name}.{ext}"
    text = text or f"a photo called {name}"
    return {"name": name, "uid": pair_uid(url, text), "url": url, "text": text, "data": data, "ext": ext}


def _opens(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data))
    except OSError:
        return False
    return True


def write_shard(lake: Lake, shard: str, samples: list[dict], failed: int = 0, missing: int = 0) -> list[str]:
    """Crawl and download a shard of ``samples`` (keys ``000000000``... in their order); returns the uids the
    download kept, in order.

    ``missing`` extra pairs are downloaded, then their tar samples lose their image file (absent, not damaged);
    ``failed`` extra pairs fail to download. A sample whose bytes are no image at all is downloaded as a
    stand-in and its bytes put in the tar afterwards, so later stages meet what the test asked for.
    """
    pairs = [
        Pair(s["name"], s["text"], s["data"] if _opens(s["data"]) else jpeg(i), link=s["url"])
        for i, s in enumerate(samples)
    ]
    gone = [
        Pair(f"missing-{i}", "x", jpeg(10_000 + i), link=f"https://example.org/missing/{shard}/{i}")
        for i in range(missing)
    ]
    pairs += gone
    pairs += [Pair(f"failed-{i}", "x", None, link=f"https://example.org/failed/{shard}/{i}") for i in range(failed)]
    uids = ingest(lake, shard, pairs)
    assert [uids[s["name"]] for s in samples] == [s["uid"] for s in samples], "the crawl's uids are the samples'"
    unreadable = {s["name"]: s["data"] for s in samples if not _opens(s["data"])}
    if unreadable or gone:
        rewrite_tar(lake, shard, uids, replace=unreadable, remove_image=[p.name for p in gone])
    return kept_uids(lake.read_parquet(graph.stage("download").table(shard), ["uid", "kept"]))
