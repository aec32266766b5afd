"""Evaluate a classifier on a list of videos with multi-view testing, and save what it
predicted for every video (JSON with metrics and probabilities, CSV for spreadsheets)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from motionmae.data import VideoDataset, VideoList, build_loader
from motionmae.data.config import DataConfig
from motionmae.eval.metrics import ClassificationMetrics, classification_metrics
from motionmae.eval.multiview import ViewPredictions, predict_views
from motionmae.fileio import atomic_write_bytes


@dataclass
class Evaluation:
    """Per-video predictions (``predictions.probs [N, K]``), the video ``paths`` in the same
    order, the class names (or ``None``), the views per video as ``(clips, crops)``, and
    ``metrics`` (``None`` when the list is unlabelled)."""

    predictions: ViewPredictions
    paths: list[str]
    classes: list[str] | None
    views: tuple[int, int]
    metrics: ClassificationMetrics | None


def evaluate_videos(
    model: nn.Module,
    videos: VideoList,
    data: DataConfig,
    classes: list[str] | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
) -> Evaluation:
    """Softmax averaged over ``data.test_clips x data.test_crops`` views of every video of
    ``videos`` (labels already in the model's class order, see
    :func:`~motionmae.eval.classifier.align_labels`), and metrics when every video has a
    label."""
    dataset = VideoDataset(videos, data, train=False, seed=0)
    loader = build_loader(dataset, batch_size=batch_size, workers=data.workers, shuffle=False,
                          seed=0, drop_last=False)
    predictions = predict_views(model, loader, device, precision, on_batch)
    paths = [str(videos.entries[i].path) for i in predictions.indices]
    labelled = bool((predictions.labels >= 0).all())
    metrics = classification_metrics(predictions.probs, predictions.labels) if labelled \
        else None
    return Evaluation(predictions, paths, classes, (data.test_clips, data.test_crops), metrics)


def _name(classes: list[str] | None, label: int) -> str:
    if label < 0:
        return ""
    return classes[label] if classes is not None else str(label)


def prediction_rows(evaluation: Evaluation, top: int = 5) -> list[dict[str, Any]]:
    """One record per video: ``path``, ``label`` (-1 = none), ``prediction``, their names,
    ``confidence`` (averaged probability of the prediction), ``top`` (the ``top`` best
    classes, best first), ``correct`` (``None`` when unlabelled) and ``probs``."""
    p = evaluation.predictions
    order = np.argsort(-p.probs, axis=1, kind="stable")[:, :top]
    rows = []
    for i, path in enumerate(evaluation.paths):
        label, best = int(p.labels[i]), int(order[i, 0])
        rows.append({
            "path": path,
            "label": label,
            "label_name": _name(evaluation.classes, label),
            "prediction": best,
            "prediction_name": _name(evaluation.classes, best),
            "confidence": float(p.probs[i, best]),
            "top": [int(k) for k in order[i]],
            "correct": None if label < 0 else label == best,
            "probs": [float(x) for x in p.probs[i]],
        })
    return rows


def save_evaluation(evaluation: Evaluation, out: str | Path,
                    extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``NAME.json`` (``metrics``, ``classes``, ``views``, ``extra`` entries and
    ``predictions``, one record per video) and ``NAME.csv`` (one row per video: path, label,
    prediction, names, confidence, top-5, correct), where ``out`` is ``NAME``, ``NAME.json``
    or ``NAME.csv``. Atomic; returns ``(json_path, csv_path)``."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".json", ".csv") else out
    json_path = stem.with_name(stem.name + ".json")
    csv_path = stem.with_name(stem.name + ".csv")
    rows = prediction_rows(evaluation)
    clips, crops = evaluation.views
    document = {
        **(extra or {}),
        "views": {"clips": clips, "crops": crops},
        "classes": evaluation.classes,
        "metrics": None if evaluation.metrics is None
        else dataclasses.asdict(evaluation.metrics),
        "predictions": rows,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(json_path, json.dumps(document, indent=1).encode())
    text = io.StringIO()
    columns = ["path", "label", "label_name", "prediction", "prediction_name", "confidence",
               "top5", "correct"]
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({
            **{k: row[k] for k in columns if k in row},
            "confidence": f"{row['confidence']:.6f}",
            "top5": " ".join(str(k) for k in row["top"]),
            "correct": "" if row["correct"] is None else int(row["correct"]),
        })
    atomic_write_bytes(csv_path, text.getvalue().encode())
    return json_path, csv_path
