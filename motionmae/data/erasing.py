"""Random erasing on uint8 clips (Zhong et al. 2017; timm's ``RandomErasing`` in pixel mode).

A box covering a random fraction of the frame, with a random aspect ratio, is filled with
uniform random pixels. In ``clip`` mode the box and its noise are the same in every frame (a
static occluder: it adds no motion of its own); in ``frame`` mode each frame draws its own
box and noise, independently, with the same probability.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from motionmae.data.config import ErasingConfig


def erase_box(
    height: int, width: int, cfg: ErasingConfig, rng: np.random.Generator, attempts: int = 10
) -> tuple[int, int, int, int] | None:
    """A box ``(y, x, h, w)`` inside a ``height x width`` frame whose area is a uniform
    fraction in ``[cfg.min_area, cfg.max_area]`` of the frame and whose aspect ratio ``w / h``
    is log-uniform in ``[cfg.min_aspect, 1 / cfg.min_aspect]``; ``None`` if ``attempts``
    draws did not fit."""
    area = height * width
    log_low, log_high = math.log(cfg.min_aspect), math.log(1 / cfg.min_aspect)
    for _ in range(attempts):
        target = rng.uniform(cfg.min_area, cfg.max_area) * area
        aspect = math.exp(rng.uniform(log_low, log_high))
        h = round(math.sqrt(target / aspect))
        w = round(math.sqrt(target * aspect))
        if 0 < h < height and 0 < w < width:
            y = int(rng.integers(0, height - h + 1))
            x = int(rng.integers(0, width - w + 1))
            return y, x, h, w
    return None


class RandomErasing:
    """``frames [T, H, W, 3] uint8, rng -> frames [T, H, W, 3] uint8`` (a copy when erased).

    Picklable (plain config), so it can run in data-loader workers.
    """

    def __init__(self, cfg: ErasingConfig) -> None:
        cfg.validate("erasing")
        self.cfg = cfg

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        count, height, width = frames.shape[:3]
        out = frames
        # clip mode: one decision for all frames (frame 0's slot); frame mode: one per frame.
        targets = [slice(None)] if self.cfg.mode == "clip" else list(range(count))
        for target in targets:
            if rng.random() >= self.cfg.prob:
                continue
            box = erase_box(height, width, self.cfg, rng)
            if box is None:
                continue
            y, x, h, w = box
            noise = torch.from_numpy(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
            if out is frames:
                out = frames.clone()
            out[target, y:y + h, x:x + w] = noise
        return out
