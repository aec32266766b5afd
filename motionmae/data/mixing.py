"""Mixup and cutmix on batches of clips, with label-smoothed soft targets (pure functions).

Batch mode, as timm's ``Mixup(mode="batch")``: one mixing weight ``lam`` per batch; clip ``i``
is mixed with clip ``B - 1 - i`` (the batch reversed). Mixup blends whole clips; cutmix pastes
one spatial box, the same in every frame (a box that moved between frames would be a motion of
its own). The target is ``lam * smooth(y) + (1 - lam) * smooth(y_reversed)``, where ``lam``
for cutmix is the exact share of the frame left unpasted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MixSettings:
    """``mixup``/``cutmix``: Beta parameters (0 disables each); with both on, cutmix is used
    with probability ``switch_prob``; ``prob``: chance a batch is mixed; ``smoothing``: label
    smoothing of the soft targets; ``num_classes``: width of the targets."""

    num_classes: int
    mixup: float = 0.8
    cutmix: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    smoothing: float = 0.1


@dataclass
class MixedBatch:
    """``clip [B, C, T, H, W]``, ``targets [B, K]`` (rows sum to 1), the weight ``lam`` of each
    clip's own label, ``mode`` (``none``, ``mixup`` or ``cutmix``) and for cutmix the pasted
    ``box`` ``(y0, y1, x0, x1)``."""

    clip: torch.Tensor
    targets: torch.Tensor
    lam: float
    mode: str
    box: tuple[int, int, int, int] | None = None


def smooth_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """``labels [B]`` int -> ``[B, K]`` float32: ``1 - smoothing + smoothing / K`` on the
    label, ``smoothing / K`` elsewhere (rows sum to 1)."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got "
                         f"{int(labels.min())}..{int(labels.max())}")
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels.view(-1, 1).long(), 1.0 - smoothing + off)


def cutmix_box(height: int, width: int, lam: float,
               rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box ``(y0, y1, x0, x1)`` of about ``(1 - lam)`` of a ``height x width`` frame: sides
    ``sqrt(1 - lam)`` of the frame's, centred uniformly, clipped at the borders (so the area
    may be smaller; :func:`mix_batch` recomputes ``lam`` from it)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(y0), int(y1), int(x0), int(x1)


def mix_batch(clip: torch.Tensor, labels: torch.Tensor, settings: MixSettings,
              rng: np.random.Generator) -> MixedBatch:
    """Mix a batch (see the module doc). ``clip [B, C, T, H, W]``, ``labels [B]`` int; the
    input is not modified. Randomness (whether, which, ``lam``, box) comes from ``rng``."""
    if clip.ndim != 5:
        raise ValueError(f"clip must be [B, C, T, H, W], got {tuple(clip.shape)}")
    own = smooth_targets(labels, settings.num_classes, settings.smoothing)
    use_mixup, use_cutmix = settings.mixup > 0, settings.cutmix > 0
    if not (use_mixup or use_cutmix) or rng.random() >= settings.prob:
        return MixedBatch(clip, own, 1.0, "none")
    cut = use_cutmix and (not use_mixup or rng.random() < settings.switch_prob)
    lam = float(rng.beta(settings.cutmix, settings.cutmix) if cut
                else rng.beta(settings.mixup, settings.mixup))
    other = clip.flip(0)
    box = None
    if cut:
        height, width = clip.shape[-2:]
        box = cutmix_box(height, width, lam, rng)
        y0, y1, x0, x1 = box
        mixed = clip.clone()
        mixed[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
    else:
        mixed = clip * lam + other * (1.0 - lam)
    targets = own * lam + own.flip(0) * (1.0 - lam)
    return MixedBatch(mixed, targets, lam, "cutmix" if cut else "mixup", box)
