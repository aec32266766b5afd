"""The pixel target: the RGB values of each tubelet, optionally normalised per patch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from motionmae.config_loading import check
from motionmae.targets.registry import TargetContext, register_target
from motionmae.tokens import TokenGrid, patchify


@dataclass
class PixelTargetConfig:
    """Pixels of each tubelet, optionally normalised per patch (VideoMAE's ``norm_pix``)."""

    weight: float = 1.0
    norm_pix: bool = True

    def validate(self, key: str) -> None:
        check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")


NORM_EPS = 1e-6


def patch_statistics(
    tokens: torch.Tensor, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token, per-channel mean and standard deviation, as VideoMAE's ``norm_pix``.

    Each token's ``tubelet*patch*patch`` values of one channel form a group (VideoMAE's
    ``(t p0 p1) c`` layout, statistics over ``t p0 p1``); the variance is unbiased and the
    standard deviation is ``sqrt(var + 1e-6)`` (VideoMAE adds its 1e-6 after the square root;
    inside it bounds the gain on flat patches at 1000x; the difference is below 1e-3 relative
    for any patch with std above 0.03 on a [0, 1] scale).

    Args:
        tokens: ``[B, N, P*C]`` from :func:`motionmae.tokens.patchify` (values ordered
            (frame, row, column, channel)).
        channels: ``C``.

    Returns:
        ``mean, std``, each ``[B, N, 1, C]``.
    """
    grouped = tokens.unflatten(-1, (-1, channels))  # [B, N, P, C]
    var, mean = torch.var_mean(grouped, dim=-2, correction=1, keepdim=True)
    return mean, (var + NORM_EPS).sqrt()


def normalize_patches(tokens: torch.Tensor, channels: int) -> torch.Tensor:
    """``[B, N, P*C]`` -> ``[B, N, P*C]`` with every (token, channel) group at mean 0, std 1
    (see :func:`patch_statistics`)."""
    mean, std = patch_statistics(tokens, channels)
    return ((tokens.unflatten(-1, (-1, channels)) - mean) / std).flatten(-2)


def denormalize_prediction(
    pred: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels: int
) -> torch.Tensor:
    """Turn a ``norm_pix`` prediction back into pixel values with the statistics you pass.

    A ``norm_pix`` model predicts each patch's shape, not its brightness or contrast, so there
    are no pixels without per-patch statistics. The caller chooses them explicitly (e.g. the
    ground truth's, from :func:`patch_statistics`, for a visualisation that says so); this
    function never looks them up.

    Args:
        pred: ``[B, N, P*C]`` predictions.
        mean, std: ``[B, N, 1, C]`` per-token, per-channel statistics (or broadcastable).
        channels: ``C``.

    Returns:
        ``[B, N, P*C]`` on the scale of the statistics (``[0, 1]`` pixels for
        :class:`PixelTarget`'s); :func:`motionmae.tokens.unpatchify` makes it a clip.
    """
    return (pred.unflatten(-1, (-1, channels)) * std + mean).flatten(-2)


class PixelTarget:
    """Pixels of each tubelet, ``dim = tubelet*patch*patch*C``, values in ``patchify`` order.

    The clip arrives normalised with ``mean``/``std`` (per channel, e.g. ImageNet's); the
    target un-normalises it to ``[0, 1]`` pixels first, then with ``norm_pix`` normalises each
    token per channel (:func:`normalize_patches`). No token weights.
    """

    name = "pixel"

    def __init__(
        self,
        cfg: PixelTargetConfig,
        grid: TokenGrid,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if len(mean) != grid.channels or len(std) != grid.channels:
            raise ValueError(f"mean/std need {grid.channels} values, got {mean} and {std}")
        self.grid = grid
        self.norm_pix = cfg.norm_pix
        self.weight = cfg.weight
        self.dim = grid.patch_dim
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._affine: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def _channel_affine(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalisation's ``(mean, std)`` as ``[C]`` tensors on the clip's device (made
        once per device and dtype: a host-to-device copy waits for the device)."""
        key = (clip.device, clip.dtype)
        if key not in self._affine:
            self._affine[key] = tuple(
                torch.tensor(values, dtype=clip.dtype, device=clip.device)
                for values in (self.mean, self.std)
            )
        mean, std = self._affine[key]
        return mean, std

    def pixels(self, clip: torch.Tensor) -> torch.Tensor:
        """Normalised clip ``[B, C, T, H, W]`` -> un-normalised pixel tokens ``[B, L, dim]``."""
        mean, std = self._channel_affine(clip)
        tokens = patchify(clip, self.grid).unflatten(-1, (-1, self.grid.channels))
        return torch.addcmul(mean, tokens, std).flatten(-2)

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        """``batch["clip"] [B, C, T, H, W]`` -> ``(target [B, L, dim], None)``.

        With ``norm_pix`` the statistics are taken on the normalised clip and mapped to pixel
        units (``pixel = x * s + m`` per channel gives ``mean_pix = mean * s + m`` and
        ``var_pix = var * s^2``), so the result equals :func:`normalize_patches` of
        :meth:`pixels` while making three passes over the clip's values after ``patchify``
        (``torch.var_mean`` over the strided groups is several times slower on CPU).
        """
        clip = batch["clip"]
        if not self.norm_pix:
            return self.pixels(clip), None
        _, std = self._channel_affine(clip)
        tokens = patchify(clip, self.grid).unflatten(-1, (-1, self.grid.channels))  # [B,L,P,C]
        group = tokens.shape[-2]
        centered = tokens - tokens.mean(dim=-2, keepdim=True)
        del tokens  # free the patchified copy before the next full-size tensor
        norm = torch.linalg.vector_norm(centered, dim=-2, keepdim=True)  # [B, L, 1, C]
        var = norm.square() / (group - 1)  # unbiased, in units of the clip
        scale = std / (var * std.square() + NORM_EPS).sqrt()
        return centered.mul_(scale).flatten(-2), None


@register_target("pixel", PixelTargetConfig)
def build_pixel_target(cfg: PixelTargetConfig, ctx: TargetContext) -> PixelTarget:
    return PixelTarget(cfg, ctx.grid, ctx.data.mean, ctx.data.std)
