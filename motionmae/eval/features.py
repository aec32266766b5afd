"""Frozen-feature extraction: every token visible, mean-pooled after the encoder's final norm
(or all tokens, for the attentive probe), and the ``.npz`` files that let several probes be
trained from one extraction pass."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from motionmae.eval.multiview import views_per_item


@dataclass
class FeatureSet:
    """Clip features with their labels and source videos.

    ``features [N, D]`` (pooled) or ``[N, L, D]`` (tokens) float32, ``labels [N]`` int64
    (-1 = unlabelled), ``paths`` N strings.
    """

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]

    def __post_init__(self) -> None:
        if not (len(self.features) == len(self.labels) == len(self.paths)):
            raise ValueError(
                f"features ({len(self.features)}), labels ({len(self.labels)}) and paths "
                f"({len(self.paths)}) differ in length"
            )


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    loader: DataLoader,
    paths: list[str],
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
    pool: bool = True,
) -> FeatureSet:
    """Mean-pooled tokens (``pool``; features ``[N, D]``) or all tokens (``[N, L, D]``, for
    the attentive probe) of every clip the loader yields.

    Args:
        encoder: maps a normalised clip ``[B, C, T, H, W]`` to tokens ``[B, L, D]``.
        loader: yields dicts with ``clip`` ``[R, C, T, H, W]``, ``label`` ``[R]`` and ``index``
            ``[R]``; with several evaluation views per video, each video's views are
            consecutive rows and ``view`` ``[R]`` numbers them (an evaluation
            ``VideoDataset``): their features are averaged into one row per video.
        paths: the dataset's video paths, indexed by ``index``.
    """
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    features, labels, indices = [], [], []
    for batch in loader:
        clip = batch["clip"].to(device, non_blocking=True)
        views = views_per_item(batch)
        with autocast:
            tokens = encoder(clip)
        pooled = tokens.float().mean(dim=1) if pool else tokens.float()
        pooled = pooled.view(-1, views, *pooled.shape[1:]).mean(dim=1)
        features.append(pooled.cpu())
        labels.append(batch["label"].view(-1, views)[:, 0])
        indices.append(batch["index"].view(-1, views)[:, 0])
        if on_batch is not None:
            on_batch(len(pooled))
    order = torch.cat(indices).tolist() if indices else []
    return FeatureSet(
        features=torch.cat(features).numpy() if features else np.zeros((0, 0), np.float32),
        labels=torch.cat(labels).numpy().astype(np.int64) if labels else np.zeros(0, np.int64),
        paths=[paths[i] for i in order],
    )


def save_features(features: FeatureSet, path: str | Path) -> None:
    """Write ``features``, ``labels`` and ``paths`` arrays to an ``.npz`` file.

    Token features (``[N, L, D]``) are stored as float16, which halves a file that is ``L``
    times the pooled one; :func:`load_features` returns float32 either way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = features.features
    if values.ndim == 3:
        values = values.astype(np.float16)
    np.savez(path, features=values, labels=features.labels,
             paths=np.asarray(features.paths, dtype=str))


def load_features(path: str | Path) -> FeatureSet:
    """Read a file written by :func:`save_features` (no pickle); features as float32."""
    with np.load(path, allow_pickle=False) as data:
        return FeatureSet(data["features"].astype(np.float32), data["labels"],
                          [str(p) for p in data["paths"]])
