"""What the ``evaluation`` stage measures a trained model on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationConfig:
    """Zero-shot classification sets (image folders or webdataset with classes.json/templates.json) and
    retrieval sets (webdataset folders of image-caption pairs), lake-relative."""

    classification_sets: tuple[str, ...] = ()
    retrieval_sets: tuple[str, ...] = ()
