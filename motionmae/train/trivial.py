"""The loss of the trivial predictor, to tell a target that is learned from one that is not.

A decoder that outputs one constant per channel, the mean of the target over the tokens it is
scored on, reaches the target's (weighted) variance; a reconstruction loss at that value says
the model predicts the mean and has learned nothing of the target. ``explained = 1 - loss /
trivial`` is the fraction of that variance the model accounts for (0: nothing, 1: all).

The mean is the batch's own, so the trivial loss is the least any constant reaches on this
batch (a model cannot know the batch mean: ``explained`` errs low, never high).
"""

from __future__ import annotations

import torch

from motionmae.targets.base import WEIGHT_SUM_EPS
from motionmae.tokens import gather_tokens

TRIVIAL_EPS = 1e-12
"""A trivial loss below this (a constant target) has nothing to explain: ``explained`` 0."""


def trivial_mse(
    target: torch.Tensor,
    masked_idx: torch.Tensor,
    token_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The masked MSE of the best constant prediction: the weighted batch mean per channel.

    Args:
        target: ``[B, L, D]`` targets for all tokens.
        masked_idx: ``[B, M]`` int64 indices of the scored (hidden) tokens.
        token_weight: ``[B, L]`` per-token loss weights, or ``None`` for all ones.

    Returns:
        Scalar float32: ``sum(w * mean_D((v - mu)^2)) / sum(w)`` over the ``B * M`` scored
        tokens, ``mu [D] = sum(w * v) / sum(w)``; the same weighting as
        :func:`~motionmae.targets.base.masked_mse`, so the two compare directly. 0 when every
        weight is 0. No host synchronisation.
    """
    values = gather_tokens(target, masked_idx).float()  # [B, M, D]
    if token_weight is None:
        weight = torch.ones(masked_idx.shape, device=values.device)
    else:
        weight = torch.gather(token_weight.float(), 1, masked_idx)  # [B, M]
    total = weight.sum().clamp_min(WEIGHT_SUM_EPS)
    mean = (weight[..., None] * values).sum(dim=(0, 1)) / total  # [D]
    error = (values - mean).square().mean(dim=-1)  # [B, M]
    return (weight * error).sum() / total


def explained_fraction(loss: torch.Tensor, trivial: torch.Tensor) -> torch.Tensor:
    """``1 - loss / trivial`` (scalar tensors in, scalar out); 0 where ``trivial`` is below
    :data:`TRIVIAL_EPS` (a constant target: nothing to explain). Negative when the model does
    worse than the constant. No host synchronisation."""
    safe = trivial.clamp_min(TRIVIAL_EPS)
    return torch.where(trivial > TRIVIAL_EPS, 1 - loss / safe, torch.zeros_like(loss))
