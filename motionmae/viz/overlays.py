"""Token overlays on a clip: hidden tubelets greyed out, per-token values as a heatmap.

Token masks and values are ``[L]`` in token order ``(t, h, w)`` with ``t`` over tubelets (see
:mod:`motionmae.tokens`); masks are True = hidden. Each token covers its tubelet's pixels
(nearest, blocky); the clip must match the token grid exactly. Inputs are never modified.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from motionmae.viz._strokes import check_frames
from motionmae.viz.colors import colormap

__all__ = ["GridLike", "overlay_mask", "overlay_token_values"]


class GridLike(Protocol):
    """Token-grid geometry: :class:`motionmae.tokens.TokenGrid` satisfies it."""

    @property
    def t(self) -> int: ...
    @property
    def h(self) -> int: ...
    @property
    def w(self) -> int: ...
    @property
    def tubelet(self) -> int: ...
    @property
    def patch(self) -> int: ...


def _token_pixels(frames: np.ndarray, tokens: np.ndarray, grid: GridLike) -> np.ndarray:
    """Per-token array ``[L, ...]`` -> per-pixel ``[T, H, W, ...]`` (nearest, blocky)."""
    t, h, w = grid.t, grid.h, grid.w
    expected = (t * grid.tubelet, h * grid.patch, w * grid.patch)
    if frames.shape[:3] != expected:
        raise ValueError(
            f"frames {tuple(frames.shape[:3])} (T, H, W) do not match the token grid "
            f"{t}x{h}x{w} tokens of {grid.tubelet}x{grid.patch}x{grid.patch} = {expected}"
        )
    if tokens.shape[0] != t * h * w:
        raise ValueError(
            f"expected {t * h * w} token values ({t}x{h}x{w}, order t,h,w); got {tokens.shape}"
        )
    per = tokens.reshape(t, h, w, *tokens.shape[1:])
    per = np.repeat(per, grid.tubelet, axis=0)
    per = np.repeat(per, grid.patch, axis=1)
    return np.repeat(per, grid.patch, axis=2)


def overlay_mask(
    frames: np.ndarray, mask: np.ndarray, grid: GridLike, strength: float = 0.6
) -> np.ndarray:
    """Grey out and darken the hidden tubelets of a clip.

    A hidden pixel becomes grey at ``(1 - strength)`` of its luma (``0.299 R + 0.587 G +
    0.114 B``); visible pixels are unchanged.

    Args:
        frames: ``[T, H, W, 3]`` uint8 with ``T = grid.t * grid.tubelet``,
            ``H = grid.h * grid.patch``, ``W = grid.w * grid.patch``.
        mask: ``[L]`` bool, True = hidden, ``L = grid.t * grid.h * grid.w`` in order (t, h, w).
        grid: token geometry (``t, h, w, tubelet, patch``), e.g. a ``TokenGrid``.

    Returns:
        ``[T, H, W, 3]`` uint8.
    """
    frames = check_frames(frames)
    mask = np.asarray(mask).astype(bool).reshape(-1)
    hidden = _token_pixels(frames, mask, grid)
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = np.clip(np.round(luma * (1.0 - strength)), 0, 255).astype(np.uint8)
    return np.where(hidden[..., None], grey[..., None], frames)


def overlay_token_values(
    frames: np.ndarray,
    values: np.ndarray,
    grid: GridLike,
    cmap: str = "viridis",
    alpha: float = 0.5,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Blend a per-token heatmap (e.g. motion bins, a sampler's probabilities) over a clip.

    Args:
        frames: ``[T, H, W, 3]`` uint8 matching ``grid`` (see :func:`overlay_mask`).
        values: ``[L]`` float in token order (t, h, w); NaN = no overlay on that token.
        cmap: a name from :data:`motionmae.viz.colors.COLORMAPS`.
        alpha: heatmap opacity in ``[0, 1]``.
        vmin, vmax: value range mapped to the ends of the colormap (default: finite min/max).

    Returns:
        ``[T, H, W, 3]`` uint8.
    """
    frames = check_frames(frames)
    values = np.asarray(values, np.float64).reshape(-1)
    finite = np.isfinite(values)
    lo = vmin if vmin is not None else (values[finite].min() if finite.any() else 0.0)
    hi = vmax if vmax is not None else (values[finite].max() if finite.any() else 1.0)
    norm = (values - lo) / (hi - lo) if hi > lo else np.full_like(values, 0.5)
    colors = colormap(norm, cmap).astype(np.float32)  # [L, 3]
    weight = np.where(finite, alpha, 0.0).astype(np.float32)[:, None]
    color_px = _token_pixels(frames, colors, grid)
    weight_px = _token_pixels(frames, weight, grid)
    out = frames.astype(np.float32) * (1.0 - weight_px) + color_px * weight_px
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
