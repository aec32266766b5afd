"""Classification metrics from per-video class probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassificationMetrics:
    """Accuracies as fractions in [0, 1].

    ``per_class[k]`` is the accuracy on videos of class ``k`` (``None`` when the set has none);
    ``mean_class`` averages the classes that occur; ``confusion[i][j]`` counts videos of
    class ``i`` predicted as ``j``.
    """

    top1: float
    top5: float
    mean_class: float
    per_class: list[float | None]
    confusion: list[list[int]]
    num_videos: int


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of ``probs [N, K]`` whose ``k`` highest classes include the label
    (``k`` capped at ``K``; ties broken by class order)."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` int64 counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> ClassificationMetrics:
    """Top-1/top-5, per-class and mean-class accuracy and the confusion matrix of
    ``probs [N, K]`` against ``labels [N]`` (every label in ``[0, K)``)."""
    if len(probs) == 0:
        raise ValueError("no videos to score")
    num_classes = probs.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got {labels.min()}.."
                         f"{labels.max()}")
    predictions = probs.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, num_classes)
    counts = confusion.sum(axis=1)
    per_class = [float(confusion[k, k] / counts[k]) if counts[k] else None
                 for k in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return ClassificationMetrics(
        top1=topk_accuracy(probs, labels, 1),
        top5=topk_accuracy(probs, labels, 5),
        mean_class=float(np.mean(present)),
        per_class=per_class,
        confusion=confusion.tolist(),
        num_videos=len(labels),
    )
