"""Evaluation entry points shared by the CLI and the demo: features of a list, probes.

A probe's validation labels are read in its training set's classes, matched by name (a list
numbers its own names: a validation list without one of the training classes would otherwise
shift every label after it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from motionmae.config_loading import from_dict
from motionmae.data import VideoDataset, VideoList, build_loader, read_video_list
from motionmae.data.config import DataConfig
from motionmae.eval import FeatureSet, ProbeResult, extract_features, knn_probe, linear_probe
from motionmae.eval.attentive import attentive_probe
from motionmae.eval.features import FeatureFileError, align_features

PROBES = ("linear", "knn", "attentive")


def eval_data_config(description: dict, **overrides) -> DataConfig:
    """The evaluation data settings of a checkpoint: the clip geometry and normalisation it was
    trained with, plus ``overrides`` (e.g. ``test_clips``)."""
    # The training config's data section, else the description's own (foreign checkpoints
    # carry their normalisation there).
    saved = {**description.get("data", {}), **description.get("config", {}).get("data", {})}
    grid = description["grid"]
    keep = {k: saved[k] for k in ("stride", "mean", "std", "on_error") if k in saved}
    data = from_dict(DataConfig, keep, "data")
    data = dataclasses.replace(data, frames=grid["frames"], size=grid["height"], **overrides)
    data.validate()
    return data


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
    return train_videos, val_videos.relabelled(train_videos.classes, known, str(val),
                                               str(train))


def list_features(
    encoder: nn.Module,
    videos: str | Path | VideoList,
    data: DataConfig,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
    pool: bool = True,
) -> FeatureSet:
    """Frozen features of every video of a list (a list file, a dataset spec, or a list read
    already), evaluation views averaged, with the list's class names; all tokens instead of
    their mean when ``pool`` is false."""
    source = "" if isinstance(videos, VideoList) else str(videos)
    if not isinstance(videos, VideoList):
        videos = read_video_list(videos)
    dataset = VideoDataset(videos, data, train=False, seed=0)
    loader = build_loader(dataset, batch_size=batch_size, workers=data.workers, shuffle=False,
                          seed=0, drop_last=False)
    paths = [str(entry.path) for entry in videos.entries]
    features = extract_features(encoder, loader, paths, device, precision, on_batch, pool)
    dataset.warn_short_clips()  # padded clips silently change what the probe sees
    return dataclasses.replace(features, classes=videos.classes, source=source)


def baselines(result: ProbeResult) -> str:
    """What a probe's top-1 compares with, as said to a user:
    ``chance 1/9 = 11.1%, val majority class 12.5%``."""
    return (f"chance 1/{round(1 / result.chance)} = {result.chance:.1%}, val majority class "
            f"{result.majority:.1%}")


def run_probe(kind: str, train: FeatureSet, val: FeatureSet) -> ProbeResult:
    """Fit probe ``kind`` on ``train`` and score it on ``val``, whose labels are first read in
    ``train``'s classes (:func:`~motionmae.eval.features.align_features`, which raises a
    ``LabelError`` for an unlabelled clip or a class unknown to ``train``). The attentive
    probe needs token features ``[N, L, D]``; the others pool them if given."""
    val = align_features(val, train)
    if train.features.shape[-1] != val.features.shape[-1]:
        train_name = train.source or "the training features"
        raise FeatureFileError(f"{val.source or 'the validation features'}: features of size "
                               f"{val.features.shape[-1]}, but {train_name} has "
                               f"{train.features.shape[-1]}: from another encoder?")
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
