"""Evaluation entry points shared by the CLI and the demo: features of a list, probes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from motionmae.config_loading import from_dict
from motionmae.data import VideoDataset, build_loader, read_video_list
from motionmae.data.config import DataConfig
from motionmae.eval import FeatureSet, ProbeResult, extract_features, knn_probe, linear_probe
from motionmae.eval.attentive import attentive_probe

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


def list_features(
    encoder: nn.Module,
    list_path: str | Path,
    data: DataConfig,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
    pool: bool = True,
) -> FeatureSet:
    """Frozen features of every video in a list file (evaluation views averaged); all tokens
    instead of their mean when ``pool`` is false."""
    videos = read_video_list(list_path)
    dataset = VideoDataset(videos, data, train=False, seed=0)
    loader = build_loader(dataset, batch_size=batch_size, workers=data.workers, shuffle=False,
                          seed=0, drop_last=False)
    paths = [str(entry.path) for entry in videos.entries]
    features = extract_features(encoder, loader, paths, device, precision, on_batch, pool)
    dataset.warn_short_clips()  # padded clips silently change what the probe sees
    return features


def run_probe(kind: str, train: FeatureSet, val: FeatureSet) -> ProbeResult:
    """Fit probe ``kind`` on ``train`` and score it on ``val``. The attentive probe needs
    token features ``[N, L, D]``; the others pool them if given."""
    if kind == "attentive":
        if train.features.ndim != 3:
            raise ValueError("the attentive probe needs token features [N, L, D] "
                             "(extract them with pool=False)")
        return attentive_probe(train.features, train.labels, val.features, val.labels)
    if train.features.ndim == 3:
        train = FeatureSet(train.features.mean(1), train.labels, train.paths)
        val = FeatureSet(val.features.mean(1), val.labels, val.paths)
    if kind == "linear":
        return linear_probe(train.features, train.labels, val.features, val.labels)
    if kind == "knn":
        return knn_probe(train.features, train.labels, val.features, val.labels)
    raise ValueError(f"unknown probe {kind!r}; choose one of {list(PROBES)}")
