"""MaskFeat's HOG target, computed on device from the clip.

Per token ``(t, h, w)`` (as MaskFeat for video, and mmpretrain's ``VideoMaskFeat``, which take
the first frame of every tubelet):

1. the first frame of tubelet ``t`` (clip frame ``t * tubelet``), un-normalised to ``[0, 1]``
   pixels with the data config's ``mean``/``std``;
2. per RGB channel, as MaskFeat (colour edges count; a grey-level HOG would miss isoluminant
   ones): Sobel gradients ``gx`` (towards +x, right), ``gy`` (towards +y, down) by ``conv2d``
   with reflect padding; magnitude ``m`` and unsigned orientation ``theta = atan2(gy, gx) mod
   180 deg``;
3. ``bins`` orientation bins centred at ``i * 180 / bins`` deg (bin 0 = horizontal gradients,
   i.e. vertical edges), soft (linear) binning between the two nearest bin centres, circular
   (``theta`` near 180 deg shares with bin 0); MaskFeat's binning is hard (floor);
4. magnitude-weighted histograms averaged over ``cell x cell`` pixel cells (MaskFeat sums; the
   same after step 5), no Gaussian window (mmpretrain's optional one is not used);
5. L2 normalisation of each cell's histogram per channel: ``hist / (||hist|| + 1e-6)`` (a flat
   cell gives zeros).

Values per token: the ``(patch / cell)^2`` cells inside the patch, ordered ``(cell row, cell
column, channel, bin)``: ``dim = (patch / cell)^2 * channels * bins`` (108 for 16 px patches,
8 px cells, RGB, 9 bins: MaskFeat's). No token weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from motionmae.config_loading import check
from motionmae.targets.registry import TargetContext, register_target
from motionmae.tokens import TokenGrid

__all__ = ["HogTarget", "hog_cells"]

@dataclass
class HogTargetConfig:
    """MaskFeat-style HOG of each tubelet frame: Sobel gradients, ``bins`` orientation bins,
    histograms over ``cell`` x ``cell`` pixel cells, L2-normalised per cell."""

    weight: float = 1.0
    bins: int = 9
    cell: int = 8

    def validate(self, key: str) -> None:
        check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")
        check(self.bins >= 2, f"{key}.bins", "must be >= 2")
        check(self.cell >= 2, f"{key}.cell", "must be >= 2")


HOG_EPS = 1e-6

# Sobel: gx = right - left, gy = down - up (cross-correlation kernels for conv2d)
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _sobel_weight(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gx = torch.tensor(_SOBEL_X, device=device, dtype=dtype)
    return torch.stack([gx, gx.t()]).unsqueeze(1)  # [2, 1, 3, 3]: gx, gy


def hog_cells(
    images: torch.Tensor, bins: int, cell: int, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cell histograms of oriented gradients (steps 2-5 of the module docstring).

    Args:
        images: ``[N, 1, H, W]`` float, one channel each; ``H``, ``W`` multiples of ``cell``.
        bins: orientation bins over 0..180 deg, bin ``i`` centred at ``i * 180 / bins``.
        cell: cell side, pixels.
        weight: the ``[2, 1, 3, 3]`` Sobel kernels (made on the fly when ``None``).

    Returns:
        ``[N, bins, H / cell, W / cell]``, each cell's histogram L2-normalised (zeros where the
        cell is flat).
    """
    if weight is None:
        weight = _sobel_weight(images.device, images.dtype)
    grad = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="reflect"), weight)  # [N, 2, H, W]
    gx, gy = grad[:, :1], grad[:, 1:]
    magnitude = torch.hypot(gx, gy)
    position = torch.remainder(torch.atan2(gy, gx), math.pi) * (bins / math.pi)  # [0, bins]
    hists = []
    for i in range(bins):  # one full-size map at a time: memory stays at a few image copies
        offset = torch.remainder(position - i, bins)
        distance = torch.minimum(offset, bins - offset)
        vote = (1.0 - distance).clamp_(min=0.0).mul_(magnitude)
        hists.append(F.avg_pool2d(vote, cell))
    hist = torch.cat(hists, dim=1)  # [N, bins, H/cell, W/cell]
    norm = torch.linalg.vector_norm(hist, dim=1, keepdim=True)
    return hist / (norm + HOG_EPS)


class HogTarget:
    """MaskFeat-style HOG of each tubelet's first frame (see the module docstring).

    ``dim = (patch / cell)^2 * channels * bins``. ``__call__(batch)`` reads ``clip [B, C, T, H,
    W]`` (normalised with ``mean``/``std``) and returns ``(values [B, L, dim] float32, None)``.
    """

    name = "hog"

    def __init__(
        self,
        cfg: HogTargetConfig,
        grid: TokenGrid,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if grid.patch % cfg.cell:
            raise ValueError(f"targets.hog.cell: {cfg.cell} px does not divide the "
                             f"{grid.patch} px patch")
        if len(mean) != grid.channels or len(std) != grid.channels:
            raise ValueError(f"mean/std need {grid.channels} values, got {mean} and {std}")
        self.grid = grid
        self.bins = cfg.bins
        self.cell = cfg.cell
        self.cells = grid.patch // cfg.cell
        self.dim = self.cells * self.cells * grid.channels * cfg.bins
        self.weight = cfg.weight
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._consts: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def _constants(self, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(mean [C,1,1,1], std [C,1,1,1], sobel [2,1,3,3])`` on the clip's device, made once
        per device and dtype."""
        key = (clip.device, clip.dtype)
        if key not in self._consts:
            shape = (-1, 1, 1, 1)
            self._consts[key] = (
                torch.tensor(self.mean, device=clip.device, dtype=clip.dtype).view(shape),
                torch.tensor(self.std, device=clip.device, dtype=clip.dtype).view(shape),
                _sobel_weight(clip.device, clip.dtype),
            )
        return self._consts[key]

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        """``batch["clip"] [B, C, T, H, W]`` -> ``(values [B, L, dim], None)``."""
        clip = batch["clip"].float()
        g = self.grid
        b, c = clip.shape[:2]
        mean, std, sobel = self._constants(clip)
        frames = clip[:, :, :: g.tubelet] * std + mean  # [B, C, t, H, W] in [0, 1]
        images = frames.transpose(1, 2).reshape(b * g.t * c, 1, g.height, g.width)
        hist = hog_cells(images, self.bins, self.cell, sobel)
        n = self.cells
        hist = hist.view(b, g.t, c, self.bins, g.h, n, g.w, n)
        # -> [B, t, h, w, cell row, cell col, C, bins]
        values = hist.permute(0, 1, 4, 6, 5, 7, 2, 3)
        return values.reshape(b, g.num_tokens, self.dim), None

    def __repr__(self) -> str:
        return f"HogTarget(dim={self.dim}, bins={self.bins}, cell={self.cell})"


@register_target("hog", HogTargetConfig)
def build_hog_target(cfg: HogTargetConfig, ctx: TargetContext) -> HogTarget:
    return HogTarget(cfg, ctx.grid, ctx.data.mean, ctx.data.std)
