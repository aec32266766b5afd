"""Trajectory-aligned HOG of the M3Video target (:mod:`motionmae.targets.m3traj`).

At each pixel: Sobel gradients (3 x 3), their orientation soft-binned into ``bins`` unsigned
bins (bin ``i`` centred at ``i * 180 / bins`` degrees, two votes per pixel weighted by the
gradient magnitude), averaged over the ``window x window`` box around the pixel (the point's
own ``patch / points_per_side`` share of the patch; MaskFeat's 8 x 8 cell for 16 px patches
and K = 4). A point's histogram is a bilinear lookup of those maps at its position, so it is
the cell centred on the point, not the fixed grid cell that contains it (as MME's
``VolumeHOG`` fetches). No block normalisation here: M3Video's appendix computes HOG without
it (its code's ``hog_norm`` default ``none``); the normalisation modes live in ``m3traj``.

``rgb``: one histogram per colour channel, ordered ``(channel, bin)`` (the paper's appendix
and MME's ``hog_channel rgb``); ``grey``: one histogram of the luma.
"""

from __future__ import annotations

import cv2
import numpy as np

from motionmae.motion.protocol import sample_bilinear

__all__ = ["hog_channel_count", "hog_maps", "orientation_maps", "point_hog"]


def hog_channel_count(channels: str) -> int:
    """Histograms per point: 3 for ``rgb``, 1 for ``grey``."""
    return 3 if channels == "rgb" else 1


def orientation_maps(image: np.ndarray, bins: int, window: int) -> np.ndarray:
    """``[H, W]`` uint8 -> ``[H, W, bins]`` float32: at each pixel the soft-binned,
    magnitude-weighted gradient orientations averaged over the ``window x window`` box around
    it (reflected borders). Grey levels in, so a unit step edge gives magnitude 4 (Sobel)."""
    image = image.astype(np.float32)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    magnitude, angle = cv2.cartToPolar(gx, gy)  # angle in [0, 2 pi)
    position = np.mod(angle * np.float32(bins / np.pi), bins).ravel()  # [0, bins)
    lower = np.minimum(position.astype(np.int64), bins - 1)
    magnitude = magnitude.ravel()
    upper_share = (position - lower) * magnitude
    upper = lower + 1
    upper[upper == bins] = 0
    maps = np.zeros(image.size * bins, np.float32)
    base = np.arange(0, image.size * bins, bins)
    maps[base + lower] = magnitude - upper_share  # two votes per pixel, to distinct bins
    maps[base + upper] = upper_share
    maps = maps.reshape(*image.shape, bins)
    return cv2.boxFilter(maps, -1, (window, window), normalize=True,
                         borderType=cv2.BORDER_REFLECT_101)


def hog_maps(frame: np.ndarray, gray: np.ndarray, bins: int, window: int,
             channels: str) -> np.ndarray:
    """One frame's orientation maps: ``[H, W, C * bins]`` float32, ``C`` =
    :func:`hog_channel_count`; ``frame`` ``[H, W, 3]`` uint8 RGB, ``gray`` its ``[H, W]``
    luma (used for ``grey``)."""
    if channels == "grey":
        return orientation_maps(gray, bins, window)
    return np.concatenate([orientation_maps(np.ascontiguousarray(frame[..., c]), bins, window)
                           for c in range(3)], axis=-1)


def point_hog(maps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Histograms of the windows around ``[n, 2]`` ``(x, y)`` points from
    :func:`orientation_maps` / :func:`hog_maps` ``[H, W, D]``: bilinear lookup (clamped at the
    border), not normalised. ``[n, D]`` float32."""
    return sample_bilinear(maps, points)
