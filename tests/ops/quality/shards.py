"""A shard as the stages before quality's model filters leave it, built by their real ops (:mod:`tests.ops.lakes`).

Each sample is described by a small record so a test reads as its own fixture. Images are smooth random patterns
of the given size (the size is what the heuristics see); ``image`` changes the sample's image in the download tar
after dedup has looked at it, the way only a hand edit could, to show that the later stages still decide every
sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from infra.lake import Lake
from ops import graph
from ops.quality.images import iter_images
from ops.stage import entering
from tests.ops.lakes import Pair, Settings, ingest, jpeg, rewrite_tar, run

GERMAN = "ein rotes Fahrrad an einer blauen Wand"


@dataclass(frozen=True)
class Sample:
    name: str
    text: str = "a red bicycle leaning on a blue wall"
    width: int = 640
    height: int = 480
    image: str = "ok"  # ok | corrupt (not an image any more) | missing (its tar sample holds no image)
    downloaded: bool = True


def write_shards(
    lake: Lake, shards: dict[str, list[Sample]], through: str = "heuristics", settings: Settings | None = None
) -> dict[str, str]:
    """Ingest every shard, run the stages after download through ``through``, then change the tars' images as
    asked; name -> uid over all shards."""
    uids: dict[str, str] = {}
    seed = 0
    for shard, samples in shards.items():
        pairs = []
        for s in samples:
            pairs.append(Pair(s.name, s.text, jpeg(seed, (s.width, s.height)) if s.downloaded else None))
            seed += 1
        uids |= ingest(lake, shard, pairs)
    run(lake, list(shards), through, settings)
    for shard, samples in shards.items():
        corrupt = [s.name for s in samples if s.image == "corrupt"]
        missing = [s.name for s in samples if s.image == "missing"]
        if corrupt or missing:
            rewrite_tar(lake, shard, uids, replace=dict.fromkeys(corrupt, b"not an image"), remove_image=missing)
    return uids


def write_shard(lake: Lake, shard: str, samples: list[Sample], through: str = "heuristics") -> dict[str, str]:
    return write_shards(lake, {shard: samples}, through)


def many(n: int, prefix: str = "u") -> list[Sample]:
    """``n`` samples that pass DataComp's basic filter, each with its own caption."""
    return [Sample(f"{prefix}{i:03d}", text=f"photo {prefix}{i} of a red bicycle") for i in range(n)]


def stored_images(lake: Lake, stage: str, shard: str, uids: list[str]) -> list[Image.Image | None]:
    """The images of ``uids`` (samples entering ``stage``) as the download stage stored them, in that order: what
    a model looking at the shard is given."""
    samples = entering(lake, graph.stage(stage), shard, ["key"])
    wanted = dict(zip(samples["key"].to_pylist(), samples["uid"].to_pylist(), strict=True))
    found = dict(iter_images(lake, shard, wanted))
    return [found[u] for u in uids]
