"""MaskFeat-style cube masking: hide random space-time blocks of tokens.

Per clip, blocks are added one after another until they cover at least the number of tokens
to hide: each block has a spatial area drawn uniformly from ``[CUBE_MIN_AREA, h*w / 2]``
tokens (clamped to the grid), an aspect ratio log-uniform in ``[CUBE_MIN_ASPECT,
1 / CUBE_MIN_ASPECT]``, a temporal extent uniform in ``[ceil(t / 2), t]`` tubelets (long
enough that a hidden token cannot simply be copied from its neighbour in time, the point of
masking video in cubes), and a uniformly random place. Every token records the first block
that covered it; the ``L - num_visible`` tokens covered first are hidden (ties and uncovered
tokens in random order), so every clip hides exactly the tube-masking count, and only the
last block may be cut. Blocks are drawn on the CPU (a short Python loop per clip, NumPy
seeded from the torch generator), then the mask is moved to the requested device.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from motionmae.masking.fixed import RatioMask
from motionmae.masking.registry import NoSettings, register_masking
from motionmae.tokens import TokenGrid

__all__ = ["CUBE_MIN_AREA", "CUBE_MIN_ASPECT", "cube_mask"]

CUBE_MIN_AREA = 4
CUBE_MIN_ASPECT = 0.3
_MAX_BLOCKS_PER_TOKEN = 10  # attempts before the remainder is filled at random


def _block_ranks(grid: TokenGrid, num_masked: int, rng: np.random.Generator) -> np.ndarray:
    """``[t, h, w]`` float: index of the first block covering each token (one past the last
    possible block where none did) plus a random fraction, so ties go at random."""
    attempts = _MAX_BLOCKS_PER_TOKEN * grid.num_tokens
    rank = np.full((grid.t, grid.h, grid.w), float(attempts))
    covered = 0
    max_area = max(CUBE_MIN_AREA, grid.spatial // 2)
    log_aspect = math.log(CUBE_MIN_ASPECT), -math.log(CUBE_MIN_ASPECT)
    for block in range(attempts):
        if covered >= num_masked:
            break
        area = rng.uniform(min(CUBE_MIN_AREA, grid.spatial), max_area)
        aspect = math.exp(rng.uniform(*log_aspect))
        bh = min(grid.h, max(1, round(math.sqrt(area * aspect))))
        bw = min(grid.w, max(1, round(math.sqrt(area / aspect))))
        bt = int(rng.integers(math.ceil(grid.t / 2), grid.t + 1))
        t0 = int(rng.integers(0, grid.t - bt + 1))
        y0 = int(rng.integers(0, grid.h - bh + 1))
        x0 = int(rng.integers(0, grid.w - bw + 1))
        region = rank[t0:t0 + bt, y0:y0 + bh, x0:x0 + bw]
        fresh = region == attempts
        covered += int(fresh.sum())
        region[fresh] = block
    return rank + rng.random(rank.shape)


def cube_mask(
    batch: int,
    grid: TokenGrid,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Hide ``L - grid.num_visible(ratio)`` tokens of every clip in space-time blocks.

    Args:
        batch: clips ``B``.
        grid: the token grid.
        ratio: hidden fraction in (0, 1).
        generator: a CPU generator (the blocks are drawn on the host), or ``None`` for the
            global one.
        device: where the mask goes (default CPU).

    Returns:
        ``[B, L]`` bool, True = hidden, the same count of True in every row.
    """
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("cube_mask draws its blocks on the host: pass a CPU generator")
    num_masked = grid.num_tokens - grid.num_visible(ratio)
    seeds = torch.randint(0, 2**62, (batch,), generator=generator).tolist()
    ranks = np.stack([_block_ranks(grid, num_masked, np.random.default_rng(seed)).ravel()
                      for seed in seeds])
    hidden = np.argsort(ranks, axis=1, kind="stable")[:, :num_masked]
    mask = np.zeros((batch, grid.num_tokens), dtype=bool)
    np.put_along_axis(mask, hidden, True, axis=1)
    out = torch.from_numpy(mask)
    return out if device is None else out.to(device, non_blocking=True)


@register_masking("cube")
def build_cube_mask(cfg: NoSettings, grid: TokenGrid, ratio: float) -> RatioMask:
    return RatioMask(cube_mask, grid, ratio)
