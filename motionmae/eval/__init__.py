"""Evaluation: frozen features, probes."""

from motionmae.eval.features import FeatureSet, extract_features, load_features, save_features
from motionmae.eval.probes import ProbeResult, knn_probe, linear_probe

__all__ = [
    "FeatureSet",
    "ProbeResult",
    "extract_features",
    "knn_probe",
    "linear_probe",
    "load_features",
    "save_features",
]
