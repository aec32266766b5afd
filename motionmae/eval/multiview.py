"""Multi-view testing: a video's ``T`` temporal clips x ``S`` spatial crops, softmax averaged.

An evaluation :class:`~motionmae.data.VideoDataset` yields each video's views as consecutive
rows of a batch (clip-major, ``view = clip * S + crop``), so a batch of ``B`` videos has
``B * V`` rows and ``view`` says where each video starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader


def views_per_item(batch: dict[str, torch.Tensor]) -> int:
    """Rows per video in a collated evaluation batch (1 without a ``view`` entry)."""
    view = batch.get("view")
    if view is None:
        return 1
    videos = int((view == 0).sum())
    if videos == 0 or len(view) % videos:
        raise ValueError(f"batch of {len(view)} rows does not hold whole videos "
                         f"(views {view.tolist()})")
    return len(view) // videos


def average_view_probs(logits: torch.Tensor, views: int) -> torch.Tensor:
    """``logits [N * V, K]`` (video-major) -> softmax averaged over each video's ``V`` views,
    ``[N, K]`` float32 (rows sum to 1)."""
    if logits.shape[0] % views:
        raise ValueError(f"{logits.shape[0]} rows are not a multiple of {views} views")
    probs = logits.float().softmax(dim=-1)
    return probs.view(-1, views, probs.shape[-1]).mean(dim=1)


@dataclass
class ViewPredictions:
    """Per video: ``probs [N, K]`` (softmax averaged over views), ``labels [N]`` (-1 when
    unlabelled), ``indices [N]`` (dataset index of the video), and the views per video."""

    probs: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    views: int


@torch.no_grad()
def predict_views(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
) -> ViewPredictions:
    """Run ``model`` (``[B, C, T, H, W]`` -> logits ``[B, K]``) on every view the loader
    yields and average the softmax over each video's views.

    Args:
        loader: evaluation batches (``clip``, ``label``, ``index`` and, with several views,
            ``view``), e.g. from an evaluation ``VideoDataset``.
        on_batch: called with the number of videos after each batch (progress).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    probs, labels, indices = [], [], []
    views = 1
    for batch in loader:
        views = views_per_item(batch)
        with autocast:
            logits = model(batch["clip"].to(device, non_blocking=True))
        probs.append(average_view_probs(logits, views).cpu())
        labels.append(batch["label"].view(-1, views)[:, 0])
        indices.append(batch["index"].view(-1, views)[:, 0])
        if on_batch is not None:
            on_batch(len(probs[-1]))
    if not probs:
        raise ValueError("the loader yielded no videos")
    return ViewPredictions(
        probs=torch.cat(probs).numpy(),
        labels=torch.cat(labels).numpy().astype(np.int64),
        indices=torch.cat(indices).numpy().astype(np.int64),
        views=views,
    )
