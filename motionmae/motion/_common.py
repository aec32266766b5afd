"""Small helpers shared by the backends (internal)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor


def to_gray(frames: np.ndarray) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 RGB -> ``[T, H, W]`` uint8 luma, in one OpenCV call."""
    t, h, w, _ = frames.shape
    flat = np.ascontiguousarray(frames).reshape(t * h, w, 3)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY).reshape(t, h, w)


def sample_bilinear(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a ``[H, W, C]`` field at ``[N, 2]`` ``(x, y)`` pixel positions.

    Pixel centres are at integers; positions outside ``[0, W-1] x [0, H-1]`` are clamped to the
    border. Returns ``[N, C]`` float32 (exact, unlike ``cv2.remap``'s 1/32-pixel fixed point).
    """
    h, w = field.shape[:2]
    x = np.clip(np.asarray(points[:, 0], np.float32), 0, w - 1)
    y = np.clip(np.asarray(points[:, 1], np.float32), 0, h - 1)
    x0 = np.minimum(x.astype(np.int64), w - 2) if w > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(y.astype(np.int64), h - 2) if h > 1 else np.zeros(len(y), np.int64)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    top = field[y0, x0] * (1 - fx) + field[y0, x1] * fx
    bot = field[y1, x0] * (1 - fx) + field[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``[N, 2]`` ``(x, y)`` points through a ``3 x 3`` homography; returns ``[N, 2]``
    float32."""
    p = np.asarray(points, np.float64)
    q = p @ h[:2, :2].T + h[:2, 2]
    w = p @ h[2, :2] + h[2, 2]
    return (q / w[:, None]).astype(np.float32)


def sample_patches(gray: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly sampled ``size`` x ``size`` patches of a ``[H, W]`` uint8 image centred on
    ``[N, 2]`` ``(x, y)`` points (1/32-pixel OpenCV precision, border replicated).
    Returns ``[N, size * size]`` float32."""
    n = len(points)
    if n == 0:
        return np.zeros((0, size * size), np.float32)
    r = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0)
    oy, ox = np.meshgrid(r, r, indexing="ij")
    out = np.empty((n, size * size), np.float32)
    chunk = 16384  # remap maps must stay below 32767 rows
    for s in range(0, n, chunk):
        p = np.asarray(points[s:s + chunk], np.float32)
        mx = np.ascontiguousarray(p[:, :1] + ox.reshape(1, -1))
        my = np.ascontiguousarray(p[:, 1:2] + oy.reshape(1, -1))
        out[s:s + chunk] = cv2.remap(gray, mx, my, interpolation=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
    return out


def appearance_match(template: Array, patch: Array, ncc_threshold: float, flat_std: float,
                     flat_mean: float) -> Array:
    """Whether patches look like their templates.

    ``template, patch``: ``[N, P]`` float32 grey values, numpy arrays or torch tensors (the
    same code runs on both: operators and methods they share). Two textured patches
    (standard deviation ``>= flat_std`` grey levels) match when their zero-mean normalised
    cross-correlation is ``>= ncc_threshold``; two flat ones match when their means differ by
    at most ``flat_mean`` grey levels; a flat and a textured patch never match. Returns
    ``[N]`` bool of the inputs' kind.
    """
    tm = template.mean(1, keepdims=True)
    pm = patch.mean(1, keepdims=True)
    tc, pc = template - tm, patch - pm
    ts = (tc * tc).mean(1) ** 0.5
    ps = (pc * pc).mean(1) ** 0.5
    ncc = (tc * pc).mean(1) / (ts * ps).clip(min=1e-6)
    t_flat, p_flat = ts < flat_std, ps < flat_std
    textured = ~t_flat & ~p_flat & (ncc >= ncc_threshold)
    flat = t_flat & p_flat & (abs(tm - pm)[:, 0] <= flat_mean)
    return textured | flat
