import math

import numpy as np
import pytest

from ops.evaluation.metrics import (
    best_positive_rank,
    class_weights,
    classification_metrics,
    per_class_recall,
    retrieval_metrics,
    zero_shot_logits,
)


def test_class_weights_average_normalised_prompts_then_renormalise():
    prompts = np.array([[[3.0, 0.0], [0.0, 4.0]], [[0.0, -2.0], [0.0, -1.0]]])
    w = class_weights(prompts)
    assert w == pytest.approx(np.array([[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, -1.0]]))


def test_logits_are_100_times_cosine():
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert zero_shot_logits(np.array([[2.0, 0.0], [3.0, 4.0]]), w) == pytest.approx(
        np.array([[100.0, 0.0], [60.0, 80.0]])
    )


# 3 classes, class 2 has no samples; ties go to the lower class index.
LOGITS = np.array(
    [
        [0.9, 0.1, 0.0],  # label 0: hit
        [0.5, 0.5, 0.0],  # label 1: tied with class 0, which ranks first -> miss at 1, hit at 2
        [0.2, 0.3, 0.9],  # label 1: rank 1
        [0.1, 0.1, 0.1],  # label 0: three-way tie, class 0 first -> hit
        [0.0, 1.0, 0.0],  # label 1: hit
    ]
)
LABELS = np.array([0, 1, 1, 0, 1])


def test_classification_metrics_by_hand():
    m = classification_metrics(LOGITS, LABELS, ks=(1, 2, 5))
    assert m["top1"] == pytest.approx(3 / 5)
    assert m["top2"] == pytest.approx(1.0)
    assert m["top5"] == pytest.approx(1.0)  # k clipped to the 3 classes
    # class 0: 2/2, class 1: 1/3, class 2: no samples -> left out of the mean
    assert m["mean_per_class_recall"] == pytest.approx((1 + 1 / 3) / 2)


def test_per_class_recall_is_nan_for_empty_classes():
    r = per_class_recall(LOGITS.argmax(axis=1), LABELS, 3)
    assert r[:2] == pytest.approx([1.0, 1 / 3])
    assert math.isnan(r[2])


def test_rank_without_positive_is_minus_one_and_ties_use_lower_index():
    scores = np.array([[0.5, 0.5, 0.5], [0.1, 0.2, 0.3]])
    positives = np.array([[False, False, True], [False, False, False]])
    assert best_positive_rank(scores, positives).tolist() == [2, -1]


def test_retrieval_metrics_by_hand():
    images = np.eye(4)
    s = 1 / math.sqrt(2)
    texts = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [s, 0, s, 0], [0, 0, s, s]])
    text_image = np.array([0, 0, 1, 2])  # image 3 has no caption: not a text-retrieval query
    m = retrieval_metrics(images, texts, text_image, ks=(1, 2, 5))
    # text -> image ranks: t0 0, t1 1, t2 2, t3 0 (img3 ties img2 but has the higher index)
    assert m["image_retrieval_recall@1"] == pytest.approx(2 / 4)
    assert m["image_retrieval_recall@2"] == pytest.approx(3 / 4)
    assert m["image_retrieval_recall@5"] == pytest.approx(1.0)
    # image -> text best ranks: img0 0 (t0), img1 2 (t1 higher, t0 tied lower index), img2 1 (t2 tied lower)
    assert m["text_retrieval_recall@1"] == pytest.approx(1 / 3)
    assert m["text_retrieval_recall@2"] == pytest.approx(2 / 3)
    assert m["text_retrieval_recall@5"] == pytest.approx(1.0)
    assert m["mean_recall@1"] == pytest.approx((2 / 4 + 1 / 3) / 2)


def test_retrieval_hit_when_any_caption_is_in_top_k():
    images = np.eye(2)
    texts = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    m = retrieval_metrics(images, texts, np.array([0, 0, 1]), ks=(1,))
    assert m["text_retrieval_recall@1"] == pytest.approx(1.0)  # img0's first caption misses, its second is its top text
    assert m["image_retrieval_recall@1"] == pytest.approx(2 / 3)


def test_retrieval_chunks_give_the_same_answer():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(7, 4)), rng.normal(size=(15, 4))
    text_image = rng.integers(0, 7, size=15)
    from ops.evaluation import metrics

    full = retrieval_metrics(images, texts, text_image)
    scores = metrics.normalize(texts) @ metrics.normalize(images).T
    positives = np.zeros(scores.shape, dtype=bool)
    positives[np.arange(15), text_image] = True
    chunked = metrics._ranks(metrics.normalize(texts), metrics.normalize(images), lambda r: positives[r], chunk=4)
    assert chunked.tolist() == best_positive_rank(scores, positives).tolist()
    assert full["image_retrieval_recall@1"] == pytest.approx(float((chunked < 1).mean()))
