"""The target protocol, the masked reconstruction loss every target shares, and the loss of
the trivial predictor it is measured against.

A decoder that outputs one constant per channel, the mean of the target over the tokens it is
scored on, reaches the target's (weighted) variance; a reconstruction loss at that value says
the model predicts the mean and has learned nothing of the target. ``explained = 1 - loss /
trivial`` is the fraction of that variance the model accounts for (0: nothing, 1: all). The
mean is the batch's own, so the trivial loss is the least any constant reaches on this batch
(a model cannot know the batch mean: ``explained`` errs low, never high)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from motionmae.tokens import gather_tokens

WEIGHT_SUM_EPS = 1e-6
TRIVIAL_EPS = 1e-12
"""A trivial loss below this (a constant target) has nothing to explain: ``explained`` 0."""


@runtime_checkable
class Target(Protocol):
    """A reconstruction target: per-token values the decoder of the same ``name`` predicts.

    Attributes:
        name: key of the target (and of its decoder in ``MaskedVideoModel.decoders``).
        dim: values per token ``D``.
        weight: the loss weight ``lambda`` in ``loss = sum_k lambda_k * masked_mse_k``.
    """

    name: str
    dim: int
    weight: float

    def __call__(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``batch`` (``clip [B, C, T, H, W]`` and whatever else the target reads) ->
        ``target [B, L, D]`` and ``token_weight [B, L]`` (per-token loss weight, e.g. 0 where a
        trajectory is not visible) or ``None`` (all tokens weigh 1)."""
        ...


def per_token_error(
    pred: torch.Tensor, target: torch.Tensor, masked_idx: torch.Tensor
) -> torch.Tensor:
    """Squared error per hidden token, averaged over the target's values.

    Args:
        pred: ``[B, M, D]`` predictions in ``masked_idx`` order.
        target: ``[B, L, D]`` targets for all tokens.
        masked_idx: ``[B, M]`` int64 hidden token indices.

    Returns:
        ``[B, M]`` in the wider of the two dtypes (differentiable; ``.detach()`` it to use
        as a reward).
    """
    dtype = torch.promote_types(pred.dtype, target.dtype)  # bf16 predictions: fp32 loss
    target = gather_tokens(target, masked_idx).to(dtype)
    # mse_loss keeps one [B, M, D] temporary where (pred - target).square() makes two
    return F.mse_loss(pred.to(dtype), target, reduction="none").mean(dim=-1)


def masked_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    masked_idx: torch.Tensor,
    token_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over the hidden tokens.

    Args:
        pred: ``[B, M, D]`` predictions in ``masked_idx`` order.
        target: ``[B, L, D]`` targets for all tokens.
        masked_idx: ``[B, M]`` int64 hidden token indices.
        token_weight: ``[B, L]`` per-token loss weights, or ``None`` for all ones.

    Returns:
        Scalar: the mean of :func:`per_token_error` over the ``B * M`` hidden tokens, or with
        ``token_weight`` its weighted mean ``sum(w * e) / max(sum(w), 1e-6)`` (0 when every
        weight is 0). No host synchronisation.
    """
    error = per_token_error(pred, target, masked_idx)
    if token_weight is None:
        return error.mean()
    weight = torch.gather(token_weight.to(error.dtype), 1, masked_idx)
    return (error * weight).sum() / weight.sum().clamp_min(WEIGHT_SUM_EPS)


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
        tokens, ``mu [D] = sum(w * v) / sum(w)``; the same weighting as :func:`masked_mse`,
        so the two compare directly. 0 when every weight is 0. No host synchronisation.
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
