"""The target protocol and the masked reconstruction loss every target shares."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from motionmae.tokens import gather_tokens

WEIGHT_SUM_EPS = 1e-6


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
