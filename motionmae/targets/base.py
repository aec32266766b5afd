"""The target protocol. The masked reconstruction loss every target shares, and the trivial
predictor it is measured against, are token operations: :mod:`motionmae.tokens`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


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
