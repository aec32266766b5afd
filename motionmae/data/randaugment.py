"""RandAugment for clips: one draw of operations and magnitudes per clip, applied identically
to every frame (uint8 ``[T, H, W, 3]`` in, same out), in torch (no torchvision, no PIL).

The operations and their magnitude ranges follow timm's "increasing" RandAugment
(``rand-m7-n4-mstd0.5-inc1`` in VideoMAE): a level ``m`` in [0, 10] maps to e.g. a rotation of
``30 * m / 10`` degrees or an enhancement factor ``1 +- 0.9 * m / 10``. Operations that
depend on image statistics (auto-contrast, equalize, contrast) take them over the whole clip,
so every frame gets the same lookup table and a static scene stays static: a per-frame
statistic would make the clip flicker, which a motion model would see as motion.

Geometric operations (rotate, shear, translate) act about the frame centre (shear) or origin
(translate) with bilinear sampling; uncovered pixels take the value ``FILL`` (grey).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from motionmae.data.config import RandAugmentConfig

MAX_LEVEL = 10.0
FILL = 128.0
_SIGNED = frozenset({"rotate", "shear_x", "shear_y", "translate_x", "translate_y", "color",
                     "contrast", "brightness", "sharpness"})
# RGB -> luma weights of PIL's "L" conversion (ITU-R 601-2).
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentOp:
    """One operation of a plan: ``name``, ``level`` in [0, 10] and direction ``sign`` (+-1)."""

    name: str
    level: float
    sign: float = 1.0


class RandAugment:
    """``frames [T, H, W, 3] uint8, rng -> frames [T, H, W, 3] uint8`` (see the module doc).

    Picklable (plain config), so it can run in data-loader workers.
    """

    def __init__(self, cfg: RandAugmentConfig) -> None:
        cfg.validate("randaugment")
        self.cfg = cfg

    def plan(self, rng: np.random.Generator) -> list[AugmentOp]:
        """The operations one clip gets: ``num_ops`` draws with replacement, each kept with
        probability 0.5, with a noisy level and a random direction."""
        ops = []
        for _ in range(self.cfg.num_ops):
            name = self.cfg.ops[int(rng.integers(len(self.cfg.ops)))]
            keep = rng.random() < 0.5
            level = self.cfg.magnitude
            if self.cfg.magnitude_std > 0:
                level = float(np.clip(rng.normal(level, self.cfg.magnitude_std), 0, MAX_LEVEL))
            sign = -1.0 if name in _SIGNED and rng.random() < 0.5 else 1.0
            if keep:
                ops.append(AugmentOp(name, level, sign))
        return ops

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return apply_ops(frames, self.plan(rng))


def apply_ops(frames: torch.Tensor, ops: list[AugmentOp]) -> torch.Tensor:
    """Apply ``ops`` in order to uint8 frames ``[T, H, W, 3]``; returns uint8 ``[T, H, W, 3]``."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    if not ops:
        return frames
    video = frames.permute(0, 3, 1, 2).float()  # [T, 3, H, W] in 0..255
    for op in ops:
        video = apply_op(video, op)
    return video.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def apply_op(video: torch.Tensor, op: AugmentOp) -> torch.Tensor:
    """One operation on a float clip ``[T, 3, H, W]`` with values in [0, 255] (same shape out,
    values kept in [0, 255])."""
    fraction = op.level / MAX_LEVEL
    factor = 1.0 + op.sign * 0.9 * fraction  # enhancement factor of the "increasing" ops
    name = op.name
    if name == "auto_contrast":
        return _auto_contrast(video)
    if name == "equalize":
        return _equalize(video)
    if name == "invert":
        return 255.0 - video
    if name == "posterize":
        bits = max(1, 4 - int(fraction * 4))
        step = 2 ** (8 - bits)
        return torch.div(video.round(), step, rounding_mode="floor") * step
    if name == "solarize":
        threshold = 256 - int(fraction * 256)
        return torch.where(video >= threshold, 255.0 - video, video)
    if name == "solarize_add":
        added = (video + int(fraction * 110)).clamp(max=255.0)
        return torch.where(video < 128, added, video)
    if name == "color":
        return _blend(_gray(video).expand_as(video), video, factor)
    if name == "contrast":
        return _blend(_gray(video).mean().expand_as(video), video, factor)
    if name == "brightness":
        return _blend(torch.zeros_like(video), video, factor)
    if name == "sharpness":
        return _blend(_smooth(video), video, factor)
    if name == "rotate":
        angle = math.radians(op.sign * 30.0 * fraction)
        cos, sin = math.cos(angle), math.sin(angle)
        return _affine(video, (cos, -sin, 0.0, sin, cos, 0.0), about_centre=True)
    if name in ("shear_x", "shear_y"):
        shear = op.sign * 0.3 * fraction
        matrix = (1.0, shear, 0.0, 0.0, 1.0, 0.0) if name == "shear_x" else \
            (1.0, 0.0, 0.0, shear, 1.0, 0.0)
        return _affine(video, matrix, about_centre=True)
    if name in ("translate_x", "translate_y"):
        height, width = video.shape[-2:]
        if name == "translate_x":
            matrix = (1.0, 0.0, op.sign * 0.45 * fraction * width, 0.0, 1.0, 0.0)
        else:
            matrix = (1.0, 0.0, 0.0, 0.0, 1.0, op.sign * 0.45 * fraction * height)
        return _affine(video, matrix, about_centre=False)
    raise ValueError(f"unknown RandAugment operation {name!r}")


def _blend(base: torch.Tensor, video: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's ImageEnhance: ``base + factor * (video - base)``, clipped to [0, 255]."""
    return (base + factor * (video - base)).clamp(0.0, 255.0)


def _gray(video: torch.Tensor) -> torch.Tensor:
    """Luma ``[T, 1, H, W]`` of ``[T, 3, H, W]``."""
    weights = torch.tensor(_LUMA, dtype=video.dtype).view(1, 3, 1, 1)
    return (video * weights).sum(dim=1, keepdim=True)


def _auto_contrast(video: torch.Tensor) -> torch.Tensor:
    """Stretch each channel's clip-wide [min, max] to [0, 255] (constant channels unchanged)."""
    low = video.amin(dim=(0, 2, 3), keepdim=True)
    high = video.amax(dim=(0, 2, 3), keepdim=True)
    span = high - low
    stretched = (video - low) * (255.0 / span.clamp(min=1e-6))
    return torch.where(span > 0, stretched, video)


def _equalize(video: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` per channel, with the histogram of the whole clip."""
    levels = video.round().clamp(0, 255).long()
    out = torch.empty_like(video)
    for channel in range(3):
        values = levels[:, channel]
        histogram = torch.bincount(values.flatten(), minlength=256)
        nonzero = histogram[histogram > 0]
        step = int((histogram.sum() - nonzero[-1]) // 255)
        if step == 0:  # one level (or almost): nothing to spread
            out[:, channel] = video[:, channel]
            continue
        before = torch.cumsum(histogram, 0) - histogram  # pixels below each level
        lut = torch.div(before + step // 2, step, rounding_mode="floor").clamp(max=255)
        out[:, channel] = lut[values].to(video.dtype)
    return out


def _smooth(video: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre 5, others 1, /13); border pixels unchanged."""
    kernel = torch.ones(3, 3, dtype=video.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    inner = F.conv2d(video, kernel, groups=3)
    out = video.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def _affine(video: torch.Tensor, matrix: tuple[float, ...], about_centre: bool) -> torch.Tensor:
    """Resample with ``input(x, y) = A @ (x, y, 1)`` for output pixel ``(x, y)`` (pixel
    centres at integers; about the frame centre if ``about_centre``). Bilinear; pixels that
    come from outside the frame are ``FILL``."""
    frames, _, height, width = video.shape
    a, b, c, d, e, f = matrix
    ys, xs = torch.meshgrid(torch.arange(height, dtype=video.dtype),
                            torch.arange(width, dtype=video.dtype), indexing="ij")
    cx, cy = ((width - 1) / 2, (height - 1) / 2) if about_centre else (0.0, 0.0)
    u, v = xs - cx, ys - cy
    src_x = a * u + b * v + c + cx
    src_y = d * u + e * v + f + cy
    # grid_sample's normalised coordinates (align_corners=False): -1 and 1 are outer edges.
    grid = torch.stack([(2 * src_x + 1) / width - 1, (2 * src_y + 1) / height - 1], dim=-1)
    grid = grid.unsqueeze(0).expand(frames, -1, -1, -1)
    # Zero padding of (video - FILL) is padding with FILL.
    sampled = F.grid_sample(video - FILL, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return (sampled + FILL).clamp(0.0, 255.0)
