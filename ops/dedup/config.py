"""What the dedup stage compares and how strictly; one frozen object so a run's settings are one digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DedupConfig:
    """Dedup settings.

    ``phash_radius``: full-image pHash Hamming distance at or below which two images are near-duplicate
    candidates. Resizes, JPEG re-encodes and colour shifts of real photos land within 0-2 bits, while two
    distinct look-alike illustrations of the fixtures are 2-4 bits apart. Distances are almost always even (each
    pHash has 32 one bits), so an odd radius behaves like the even one below it.
    ``crop_radius``: distance at or below which one image's full pHash and a window pHash of another (see
    :mod:`ops.dedup.crops`) make a crop candidate; ``None`` turns crop matching off. Measured by
    ``bench/dedup.py``: 4 finds slightly fewer crops, 8 no more than 6 for 20% more checks.
    ``min_similarity``: the aligned detail correlation (:func:`ops.dedup.crops.similarity`) a candidate must reach
    to become a link: every pHash candidate is checked except images with identical pHashes, crops and
    full-image ones alike, which is what keeps look-alikes apart. Measured on textured images: 0.97 keeps
    precision at 1.0 (the hardest distinct pairs, tiles showing one straight edge, score up to 0.96), 0.95 and
    0.90 find a little more and merge such tiles, 0.99 loses a tenth of the duplicates.
    ``None`` takes full-image candidates unchecked, as before crop matching, and needs ``crop_radius=None``
    (hash tables written before detail thumbnails existed are then still readable).
    ``eval_radius``: the full-image radius for eval-set decontamination, wider because a missed benchmark copy
    costs more than a dropped training image, and eval matches are never chained. Eval matches use the same
    checks and crop matching as the index.
    ``candidates_per_image`` and ``checks_per_image`` bound the index's work per image, so that it grows in
    proportion to the images even where look-alikes crowd the hash space (product photos on a plain background:
    among 6,800 of them an image has about 150 crop candidates, and the number grows with the set). Each
    distinct pHash keeps the ``candidates_per_image`` closest other clusters as full-image candidates and as
    many as crop candidates; its image then takes part in at most ``checks_per_image`` checks, closest first,
    skipping candidates an earlier link already joined. Measured by ``bench/dedup.py``: 8 checks find as many
    duplicates as 32 on the perturbation set and all but 0.3% of the pairs on generated product photos; what
    the bounds left unchecked is counted in the index report.
    ``min_contrast``: images whose 32x32 grey thumbnail varies less than this (standard deviation in grey levels)
    are never linked by pHash, which is a constant pattern for every flat image; exact copies still are.
    ``eval_sets``: folders of evaluation images, lake-relative (``eval/<name>``) or any fsspec URI / local path.
    ``embed_model``: an open_clip model name; with it, ``hash_shard`` stores image embeddings and the index also
    links images whose cosine similarity is at least ``semantic_threshold`` (SemDeDup). ``embed_pretrained`` is
    an open_clip pretrained tag or a local checkpoint path; ``None`` builds the architecture with random weights
    (tests only: it is recorded, so a random model is never mistaken for a real one).
    """

    phash_radius: int = 2
    crop_radius: int | None = 6
    min_similarity: float | None = 0.97
    eval_radius: int = 6
    min_contrast: float = 1.0
    candidates_per_image: int = 16
    checks_per_image: int = 8
    eval_sets: tuple[str, ...] = ()
    embed_model: str | None = None
    embed_pretrained: str | None = None
    semantic_threshold: float = 0.95
    embed_batch_size: int = 64
    hash_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.crop_radius is not None and self.min_similarity is None:
            raise ValueError("crop matching needs min_similarity: unchecked crop candidates merge look-alikes")
        if self.candidates_per_image < 1 or self.checks_per_image < 1:
            raise ValueError("candidates_per_image and checks_per_image must be at least 1")

    @property
    def verified(self) -> bool:
        """Whether pHash candidates are checked against the detail thumbnails (and hash tables must hold them)."""
        return self.min_similarity is not None

    @property
    def semantic(self) -> bool:
        return self.embed_model is not None

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Identifies the settings that change decisions (batch sizes do not)."""
        decisive = {k: v for k, v in asdict(self).items() if not k.endswith("batch_size")}
        return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=list).encode()).hexdigest()[:16]
