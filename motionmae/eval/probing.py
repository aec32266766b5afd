"""Probes as the commands, the demo and training run them: the lists checked first, one probe
kind fitted on features of the training set and scored on the validation set, its result
beside its baselines; and the linear probe of the encoder while it pretrains.

A probe's validation labels are read in its training set's classes, matched by name (a list
numbers its own names: a validation list without one of the training classes would otherwise
shift every label after it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionmae.data import VideoList, read_video_list
from motionmae.data.config import DataConfig
from motionmae.data.entries import shared_videos, warn_shared_videos
from motionmae.eval.attentive import attentive_probe
from motionmae.eval.clips import eval_data_config
from motionmae.eval.features import (
    FeatureFileError,
    FeatureSet,
    align_features,
    check_same_origin,
    list_features,
)
from motionmae.eval.probes import ProbeResult, knn_probe, linear_probe

log = logging.getLogger(__name__)

PROBES = ("linear", "knn", "attentive")


def read_probe_lists(train: str | Path, val: str | Path) -> tuple[VideoList, VideoList]:
    """The training and validation lists of a probe, checked before any feature is extracted:
    every video labelled, and ``val``'s labels in ``train``'s numbering (matched by name).

    Raises:
        LabelError: an unlabelled video, or a ``val`` class that no ``train`` video has
            (the message names the list and the class).
    """
    train_videos = read_video_list(train).require_labels(str(train), "a probe")
    val_videos = read_video_list(val).require_labels(str(val), "a probe")
    known = {entry.label for entry in train_videos.entries}
    # Refused first: an unknown class ends the command, so no warning before its error.
    relabelled = val_videos.relabelled(train_videos.classes, known, str(val), str(train))
    warn_shared_videos([e.path for e in train_videos.entries],
                       [e.path for e in val_videos.entries], str(train), str(val))
    return train_videos, relabelled


def baselines(result: ProbeResult) -> str:
    """What a probe's top-1 compares with, as said to a user:
    ``chance 1/9 = 11.1%, val majority class 12.5%``."""
    return (f"chance 1/{round(1 / result.chance)} = {result.chance:.1%}, val majority class "
            f"{result.majority:.1%}")


def not_held_out(result: ProbeResult) -> str:
    """A warning to print after the result when some validation clips are from training
    videos (``""`` when none are)."""
    if not result.val_from_train:
        return ""
    return (f"  NOT HELD OUT: {result.val_from_train} of {result.num_val} val clips are from "
            "training videos")


def run_probe(kind: str, train: FeatureSet, val: FeatureSet) -> ProbeResult:
    """Fit probe ``kind`` on ``train`` and score it on ``val``, whose labels are first read in
    ``train``'s classes (:func:`~motionmae.eval.features.align_features`, which raises a
    ``LabelError`` for an unlabelled clip or a class unknown to ``train``). The attentive
    probe needs token features ``[N, L, D]``; the others pool them if given."""
    check_same_origin(val, train)
    val = align_features(val, train)
    if train.features.shape[-1] != val.features.shape[-1]:
        train_name = train.source or "the training features"
        raise FeatureFileError(f"{val.source or 'the validation features'}: features of size "
                               f"{val.features.shape[-1]}, but {train_name} has "
                               f"{train.features.shape[-1]}: from another encoder?")
    return dataclasses.replace(_fit(kind, train, val),
                               val_from_train=len(shared_videos(train.paths, val.paths)))


def _fit(kind: str, train: FeatureSet, val: FeatureSet) -> ProbeResult:
    if kind == "attentive":
        if train.features.ndim != 3 or val.features.ndim != 3:
            raise FeatureFileError("the attentive probe needs token features [N, L, D]: "
                                   "extract them with `motionmae features --tokens` "
                                   "(pool=False)")
        return attentive_probe(train.features, train.labels, val.features, val.labels)
    train, val = _pooled(train), _pooled(val)
    if kind == "linear":
        return linear_probe(train.features, train.labels, val.features, val.labels)
    if kind == "knn":
        return knn_probe(train.features, train.labels, val.features, val.labels)
    raise ValueError(f"unknown probe {kind!r}; choose one of {list(PROBES)}")


def _pooled(features: FeatureSet) -> FeatureSet:
    """Token features ``[N, L, D]`` averaged to ``[N, D]``; pooled ones as they are."""
    if features.features.ndim != 3:
        return features
    return dataclasses.replace(features, features=features.features.mean(1))


class TrainingProbe:
    """A linear probe of an encoder on fixed train/val lists while it pretrains
    (``run.probe_every``); ``probe(encoder, device)`` -> ``{"probe/linear": top-1}``.

    Every ``run.probe_every`` steps (and at the last step) rank 0 extracts frozen,
    mean-pooled features of two small labelled lists (``run.probe_train``,
    ``run.probe_val``) with the current encoder (eval mode, no gradients, on the training
    device), fits a linear probe and logs its top-1 accuracy: a curve that says whether the
    representation improves, not only the loss.

    Args:
        train_list, val_list: list files (or dataset specs) with a label for every video;
            read (and ``val_list``'s classes checked against ``train_list``'s) here, so that
            a bad list fails before training.
        data: the evaluation clips (geometry and normalisation of the training clips).
        batch_size: clips per feature-extraction batch.
        precision: ``fp32`` or ``bf16`` autocast for the encoder.
    """

    def __init__(self, train_list: str | Path, val_list: str | Path, data: DataConfig,
                 batch_size: int = 8, precision: str = "fp32") -> None:
        self.train_videos, self.val_videos = read_probe_lists(train_list, val_list)
        self.data = data
        self.batch_size = batch_size
        self.precision = precision

    @classmethod
    def for_pretraining(cls, description: dict[str, Any], train_list: str | Path,
                        val_list: str | Path, workers: int, batch_size: int,
                        precision: str) -> TrainingProbe:
        """The probe of a pretraining task from its ``describe()`` (clip geometry and
        normalisation), one evaluation view per video."""
        data = eval_data_config(description, workers=workers)
        return cls(train_list, val_list, data, batch_size, precision)

    def __call__(self, encoder: nn.Module, device: torch.device) -> dict[str, float]:
        was_training = encoder.training
        start = time.perf_counter()
        try:
            train = list_features(encoder, self.train_videos, self.data, self.batch_size,
                                  device, self.precision)
            val = list_features(encoder, self.val_videos, self.data, self.batch_size, device,
                                self.precision)
        finally:
            encoder.train(was_training)  # extract_features left it in eval mode
        result = run_probe("linear", train, val)
        log.info("linear probe: top-1 %.1f%% (%s; %d train / %d val clips, %.1f s)",
                 100 * result.top1, baselines(result), result.num_train, result.num_val,
                 time.perf_counter() - start)
        return {"probe/linear": result.top1}
