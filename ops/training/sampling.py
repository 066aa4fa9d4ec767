"""Per-sample choices open_clip_train does not make: raw or synthetic caption, and online curation.

Every choice is a hash of (seed, purpose, epoch, uid), not a draw from a generator, so it is the same on every
rank, worker and restart, differs between epochs, and needs no state. A sample's uid is its key in the dataset
shards; ``p_keep`` comes from its ``.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def draw(seed: int, purpose: str, epoch: int, uid: str) -> float:
    """A uniform number in [0, 1) fixed by its arguments."""
    h = hashlib.blake2b(f"{seed}\0{purpose}\0{epoch}\0{uid}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def keep_for_epoch(seed: int, epoch: int, uid: str, p_keep: float | None) -> bool:
    """Online curation: MetaCLIP's balancing draw, redone each epoch (no ``p_keep`` means always kept)."""
    return p_keep is None or draw(seed, "curation", epoch, uid) < p_keep


def use_synthetic(seed: int, epoch: int, uid: str, probability: float) -> bool:
    return probability > 0 and draw(seed, "caption", epoch, uid) < probability


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def pick_sentence(seed: int, epoch: int, uid: str, text: str) -> str:
    """One sentence of a long synthetic caption, a different one each epoch (DreamLIP's sub-caption sampling):
    recaption keeps captions whole, and CLIP's text tower reads only the first 77 tokens of what it is given."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    if len(sentences) <= 1:
        return text
    return sentences[int(draw(seed, "sentence", epoch, uid) * len(sentences))]


class SampleChooser:
    """A webdataset pipeline stage that wraps open_clip_train's tar reader.

    It drops the samples online curation does not draw this epoch and swaps in one sentence of the synthetic
    caption (``syn.txt``) with the configured probability, before open_clip_train decodes anything. ``epoch``
    is open_clip_train's shared epoch counter, attached after its pipeline is built (see
    :mod:`ops.training.entry`).
    """

    def __init__(
        self,
        read: Callable[[Iterable[dict[str, Any]]], Iterator[dict[str, Any]]],
        seed: int,
        synthetic_probability: float,
        online_curation: bool,
    ) -> None:
        self.read = read
        self.seed = seed
        self.synthetic_probability = synthetic_probability
        self.online_curation = online_curation
        self.epoch: Any = None  # open_clip_train.data.SharedEpoch

    def __call__(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        epoch = self.epoch.get_value() if self.epoch is not None else 0
        for sample in self.read(src):
            uid = sample["__key__"].rsplit("/", 1)[-1]
            if self.online_curation and "json" in sample:
                p_keep = json.loads(sample["json"]).get("p_keep")
                if not keep_for_epoch(self.seed, epoch, uid, p_keep):
                    continue
            if "syn.txt" in sample and use_synthetic(self.seed, epoch, uid, self.synthetic_probability):
                sample["txt"] = pick_sentence(self.seed, epoch, uid, sample["syn.txt"].decode()).encode()
            yield sample
