"""Masks with a fixed visible count per clip: uniformly random tokens, and VideoMAE's tubes.

Masks are bool ``[B, L]``, True = hidden, tokens in (t, h, w) order. Both kinds keep exactly
``grid.num_visible(ratio)`` tokens per clip, so visible/hidden index tensors have static
shapes (see :func:`motionmae.tokens.mask_to_indices`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from motionmae.masking.registry import NoSettings, register_masking
from motionmae.tokens import TokenGrid, uniform_noise


def keep_lowest(noise: torch.Tensor, num_keep: int) -> torch.Tensor:
    """``[B, N]`` noise -> ``[B, N]`` bool mask that is False at each row's ``num_keep``
    smallest entries (kept) and True elsewhere (hidden)."""
    keep = torch.argsort(noise, dim=1)[:, :num_keep]
    mask = torch.ones(noise.shape, dtype=torch.bool, device=noise.device)
    return mask.scatter(1, keep, False)


def random_mask(
    batch: int,
    grid: TokenGrid,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Hide a uniformly random ``L - grid.num_visible(ratio)`` tokens of every clip.

    Args:
        batch: clips ``B``.
        grid: the token grid (``L = grid.num_tokens``).
        ratio: hidden fraction in (0, 1).
        generator: source of randomness; the noise is drawn on its device.
        device: where the mask goes (default: the generator's device, else CPU).

    Returns:
        ``[B, L]`` bool, True = hidden; the same count of True in every row.
    """
    noise = uniform_noise((batch, grid.num_tokens), generator, device)
    return keep_lowest(noise, grid.num_visible(ratio))


def tube_mask(
    batch: int,
    grid: TokenGrid,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """VideoMAE's tube masking: one random spatial mask per clip, repeated over all ``t``
    tubelet slices; ``grid.num_visible_spatial(ratio)`` positions visible per slice.

    Args and returns as :func:`random_mask`: ``[B, L]`` bool, True = hidden, with
    ``grid.num_visible(ratio) = t * num_visible_spatial`` visible tokens per row.
    """
    noise = uniform_noise((batch, grid.spatial), generator, device)
    spatial = keep_lowest(noise, grid.num_visible_spatial(ratio))  # [B, h*w]
    return spatial.unsqueeze(1).expand(-1, grid.t, -1).reshape(batch, grid.num_tokens)


MaskFunction = Callable[..., torch.Tensor]


class RatioMask:
    """A mask generator around a fixed-count mask function (:func:`random_mask`,
    :func:`tube_mask`, :func:`~motionmae.masking.cube.cube_mask`).

    Reads ``batch["clip"]`` ``[B, C, T, H, W]`` for the batch size and device only. The
    noise is drawn on ``generator``'s device (CPU generators work for CUDA clips: the mask is
    moved over, a small copy without a host sync).
    """

    def __init__(self, fn: MaskFunction, grid: TokenGrid, ratio: float) -> None:
        self.fn = fn
        self.grid = grid
        self.ratio = ratio
        self.num_visible = grid.num_visible(ratio)
        self.num_masked = grid.num_tokens - self.num_visible

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``batch["clip"] [B, C, T, H, W]`` -> ``mask [B, L]`` bool on the clip's device."""
        clip = batch["clip"]
        return self.fn(clip.shape[0], self.grid, self.ratio, generator, clip.device)

    def __repr__(self) -> str:
        return f"RatioMask({self.fn.__name__}, ratio={self.ratio}, visible={self.num_visible})"


@register_masking("random")
def build_random_mask(cfg: NoSettings, grid: TokenGrid, ratio: float) -> RatioMask:
    return RatioMask(random_mask, grid, ratio)


@register_masking("tube")
def build_tube_mask(cfg: NoSettings, grid: TokenGrid, ratio: float) -> RatioMask:
    return RatioMask(tube_mask, grid, ratio)
