"""evaluation: zero-shot classification and image-text retrieval with CLIP_benchmark's definitions."""

from ops.evaluation.metrics import class_weights, classification_metrics, retrieval_metrics, zero_shot_logits
from ops.evaluation.retrieval import retrieval
from ops.evaluation.sets import ClassificationSet, load_classification_set
from ops.evaluation.tails import class_frequencies, entry_counts_from_table, neglected_tails
from ops.evaluation.zeroshot import zero_shot

__all__ = [
    "ClassificationSet",
    "class_frequencies",
    "class_weights",
    "classification_metrics",
    "entry_counts_from_table",
    "load_classification_set",
    "neglected_tails",
    "retrieval",
    "retrieval_metrics",
    "zero_shot",
    "zero_shot_logits",
]
