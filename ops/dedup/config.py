"""What the dedup stage compares and how strictly; one frozen object so a run's settings are one digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DedupConfig:
    """Dedup settings.

    ``phash_radius``: pHash Hamming distance at or below which two images are near duplicates. The default is the
    radius of best pair precision measured by ``bench/dedup.py``: resizes, JPEG re-encodes and colour shifts of
    real photos land within 0-2 bits, while two distinct look-alike illustrations of the fixtures are 4 bits
    apart, and a larger radius mostly adds chains through low-contrast images. Crops move pHash by 2-16 bits;
    catching them takes a radius near 10 (and its false merges) or semantic dedup. Distances are almost always
    even (each pHash has 32 one bits), so an odd radius behaves like the even one below it.
    ``eval_radius``: the same for eval-set decontamination, wider because a missed benchmark copy costs more
    than a dropped training image, and eval matches are never chained.
    ``min_contrast``: images whose 32x32 grey thumbnail varies less than this (standard deviation in grey levels)
    are never linked by pHash, which is a constant pattern for every flat image; exact copies still are.
    ``eval_sets``: folders of evaluation images, lake-relative (``eval/<name>``) or any fsspec URI / local path.
    ``embed_model``: an open_clip model name; with it, ``hash_shard`` stores image embeddings and the index also
    links images whose cosine similarity is at least ``semantic_threshold`` (SemDeDup). ``embed_pretrained`` is
    an open_clip pretrained tag or a local checkpoint path; ``None`` builds the architecture with random weights
    (tests only: it is recorded, so a random model is never mistaken for a real one).
    """

    phash_radius: int = 2
    eval_radius: int = 6
    min_contrast: float = 1.0
    eval_sets: tuple[str, ...] = ()
    embed_model: str | None = None
    embed_pretrained: str | None = None
    semantic_threshold: float = 0.95
    embed_batch_size: int = 64
    hash_batch_size: int = 256

    @property
    def semantic(self) -> bool:
        return self.embed_model is not None

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Identifies the settings that change decisions (batch sizes do not)."""
        decisive = {k: v for k, v in asdict(self).items() if not k.endswith("batch_size")}
        return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=list).encode()).hexdigest()[:16]
