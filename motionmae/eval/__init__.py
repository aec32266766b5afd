"""Evaluation: frozen features of a list and the probes trained on them (also while a run
pretrains), multi-view testing of fine-tuned classifiers, metrics and saved predictions.

* :mod:`~motionmae.eval.clips`: the clips a checkpoint is evaluated on.
* :mod:`~motionmae.eval.features`: features of a loader or a list, their ``.npz`` files.
* :mod:`~motionmae.eval.probing`: probes of lists or feature files (``run_probe``), and the
  in-training probe (``TrainingProbe``); the probes themselves in
  :mod:`~motionmae.eval.probes` (linear, kNN) and :mod:`~motionmae.eval.attentive`.
* :mod:`~motionmae.eval.classifier`, :mod:`~motionmae.eval.multiview`,
  :mod:`~motionmae.eval.predictions`, :mod:`~motionmae.eval.metrics`: fine-tuned classifiers,
  clips x crops, predictions and their metrics.
* :mod:`~motionmae.eval.windows`: features along long videos.
"""

from motionmae.eval.classifier import align_labels, describe_classifier, load_classifier
from motionmae.eval.clips import eval_data_config
from motionmae.eval.features import (
    FeatureSet,
    extract_features,
    list_features,
    load_features,
    save_features,
)
from motionmae.eval.metrics import ClassificationMetrics, classification_metrics
from motionmae.eval.multiview import ViewPredictions, average_view_probs, predict_views
from motionmae.eval.predictions import Evaluation, evaluate_videos, save_evaluation
from motionmae.eval.probes import ProbeResult, knn_probe, linear_probe
from motionmae.eval.probing import PROBES, TrainingProbe, read_probe_lists, run_probe

__all__ = [
    "PROBES",
    "ClassificationMetrics",
    "Evaluation",
    "FeatureSet",
    "ProbeResult",
    "TrainingProbe",
    "ViewPredictions",
    "align_labels",
    "average_view_probs",
    "classification_metrics",
    "describe_classifier",
    "eval_data_config",
    "evaluate_videos",
    "extract_features",
    "knn_probe",
    "linear_probe",
    "list_features",
    "load_classifier",
    "load_features",
    "predict_views",
    "read_probe_lists",
    "run_probe",
    "save_evaluation",
    "save_features",
]
