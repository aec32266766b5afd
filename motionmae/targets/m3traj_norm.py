"""Normalisations of the M3Video trajectory target (:mod:`motionmae.targets.m3traj`).

Values are laid out ``[..., K, L, F]``: ``K`` trajectories of a patch, ``L`` steps, features
``F = 2 + C * bins`` (the clipped position change ``(dx, dy)`` in pixels, then ``C``
histograms of ``bins`` bins, or none without HOG).

* :func:`normalize_patch_std`, :func:`normalize_path_length`: per clip, in the loader
  workers (numpy), each token's values on their own.
* :func:`normalize_batch`: on the collated batch, on the device (torch), because its scales
  are the batch's. Definition, with the batch's token weights ``w``:

  1. **Positions** divided by ``r = max(rms, rms_floor)``, ``rms`` the root mean square of
     every position value (``dx`` and ``dy`` of every trajectory and step) of the weighted
     tokens: unit RMS over the batch, as the tracks target's ``norm: batch``. Speed
     differences between clips and tokens are kept (what ``patch_std`` removes: a patch's
     own motion); the floor keeps an all-static batch's flow noise small. A step is one
     source frame, so typical values are a fraction of a pixel (the default floor, 0.25 px,
     is below them where the tracks target's 1 px over a whole tubelet window would not be).
  2. **HOG**: each histogram L2-normalised (zeros on flat windows), which removes contrast:
     raw Sobel histograms scale with the edges' grey levels (hundreds) and would swamp
     positions of unit RMS. Then the whole HOG block is multiplied by ``s = min(1,
     sqrt(V_pos / V_hog))``, ``V`` a block's summed per-value weighted variance over the
     batch's tokens (the trivial predictor's loss, :func:`motionmae.tokens.trivial_mse`,
     restricted to the block, times its width). So the HOG's share of the variance the loss
     starts from, and of what ``explained/m3traj`` divides by, is at most a half: learning
     appearance can never pay more than learning the motion, which is what went wrong with
     ``path_length`` (the HOG held nearly all the variance and drowned the motion). Per
     trajectory step the L2-normalised histograms have a summed mean square of ``C`` (one
     per channel) and unit-RMS positions of 2, so with grey HOG and moving content ``s`` is
     1 and appearance keeps its own scale; it shrinks the HOG in batches with little motion
     (positions at the floor, or all alike), where the target is meant to say "static" more
     than "textured", and can with RGB HOG. Where it acts, the HOG's scale changes from batch
     to batch, which a model cannot predict: a reason for the floor to sit below real motion.

  All statistics are detached 0-d tensors on the values' device: no host synchronisation.
  Under DDP the batch is each process's own (no collective), as the tracks target's.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["normalize_batch", "normalize_patch_std", "normalize_path_length"]

PATH_FLOOR = 1.0  # px: the smallest mean path length a token's deltas are divided by
HOG_EPS = 1e-6
PATCH_STD_EPS = 1e-6  # added to the std, as MME's PatchStd
VARIANCE_EPS = 1e-12  # a HOG block with less variance than this is left as it is


def normalize_patch_std(values: np.ndarray) -> np.ndarray:
    """MME's ``PatchStd``: ``[..., K, L, F]`` -> the same shape, each ``(step, feature)``
    z-scored over the ``K`` trajectories of its patch (unbiased std, ``+ 1e-6``). Needs ``K >=
    2``."""
    mean = values.mean(axis=-3, keepdims=True)
    std = values.std(axis=-3, ddof=1, keepdims=True)
    return ((values - mean) / (std + PATCH_STD_EPS)).astype(np.float32)


def normalize_path_length(values: np.ndarray, bins: int) -> np.ndarray:
    """``[..., K, L, 2 + C * bins]`` -> the same shape: the position changes divided by the
    mean path length of the patch's ``K`` trajectories (floored at :data:`PATH_FLOOR` px),
    each ``bins``-bin histogram L2-normalised."""
    out = values.astype(np.float32, copy=True)
    delta = out[..., :2]
    path = np.linalg.norm(delta, axis=-1).sum(axis=-1).mean(axis=-1)  # [...]
    delta /= np.maximum(path, PATH_FLOOR)[..., None, None, None]
    if out.shape[-1] > 2:
        hist = out[..., 2:].reshape(*out.shape[:-1], -1, bins)
        hist /= np.linalg.norm(hist, axis=-1, keepdims=True) + HOG_EPS
        out[..., 2:] = hist.reshape(*out.shape[:-1], -1)
    return out


def _block_variance(block: torch.Tensor, weight: torch.Tensor, total: torch.Tensor
                    ) -> torch.Tensor:
    """``[B, N, D']`` values, ``[B, N]`` weights, their sum -> 0-d: the per-value weighted
    variance over the tokens, summed over the ``D'`` values."""
    mean = (weight[..., None] * block).sum(dim=(0, 1)) / total  # [D']
    return (weight[..., None] * (block - mean).square()).sum() / total


def normalize_batch(values: torch.Tensor, weight: torch.Tensor, bins: int,
                    rms_floor: float) -> torch.Tensor:
    """``norm: batch`` (module docstring) of a collated batch.

    Args:
        values: ``[B, N, K, L, F]`` float, positions in clipped pixels and raw histograms
            (what the workers ship with ``norm: batch``), ``F = 2`` or ``2 + C * bins``.
        weight: ``[B, N]`` token weights; tokens of weight 0 count in no statistic.
        bins: bins per histogram.
        rms_floor: the smallest divisor of the positions, in pixels (> 0).

    Returns:
        ``[B, N, K, L, F]`` float32. With all weights 0 the positions are divided by the floor
        and the HOG is only L2-normalised.
    """
    values = values.detach().float()
    weight = weight.detach().float()
    batch, tokens = values.shape[:2]
    total = weight.sum().clamp(min=1.0)
    positions = values[..., :2]
    mean_square = (positions.square().mean(dim=(2, 3, 4)) * weight).sum() / total
    positions = positions / mean_square.clamp(min=rms_floor**2).sqrt()
    if values.shape[-1] == 2:
        return positions
    hist = values[..., 2:].unflatten(-1, (-1, bins))
    hist = (hist / (torch.linalg.vector_norm(hist, dim=-1, keepdim=True) + HOG_EPS)).flatten(-2)
    v_pos = _block_variance(positions.reshape(batch, tokens, -1), weight, total)
    v_hog = _block_variance(hist.reshape(batch, tokens, -1), weight, total)
    # min(1, sqrt(v_pos / v_hog)); 1 where the HOG has (next to) no variance to shrink
    scale = (v_pos / v_hog.clamp(min=VARIANCE_EPS)).clamp(max=1.0).sqrt()
    scale = torch.where(v_hog > VARIANCE_EPS, scale, torch.ones_like(scale))
    return torch.cat([positions, hist * scale], dim=-1)
