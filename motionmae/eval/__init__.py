"""Evaluation: frozen features and probes; multi-view testing of fine-tuned classifiers,
metrics and saved predictions."""

from motionmae.eval.classifier import align_labels, describe_classifier, load_classifier
from motionmae.eval.features import FeatureSet, extract_features, load_features, save_features
from motionmae.eval.metrics import ClassificationMetrics, classification_metrics
from motionmae.eval.multiview import ViewPredictions, average_view_probs, predict_views
from motionmae.eval.predictions import Evaluation, evaluate_videos, save_evaluation
from motionmae.eval.probes import ProbeResult, knn_probe, linear_probe

__all__ = [
    "ClassificationMetrics",
    "Evaluation",
    "FeatureSet",
    "ProbeResult",
    "ViewPredictions",
    "align_labels",
    "average_view_probs",
    "classification_metrics",
    "describe_classifier",
    "evaluate_videos",
    "extract_features",
    "knn_probe",
    "linear_probe",
    "load_classifier",
    "load_features",
    "predict_views",
    "save_evaluation",
    "save_features",
]
