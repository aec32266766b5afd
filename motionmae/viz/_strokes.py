"""Frame checks and the marks drawn on frames: OpenCV fixed point, anti-aliased (internal).

Coordinates are ``(x, y)`` pixels with pixel centres at integers; :func:`to_fixed` turns them
into OpenCV's fixed point (``SHIFT`` bits, 1/16 pixel), which :func:`dot`, :func:`cross` and
:func:`dashed_line` draw at sub-pixel precision. Shared by the track drawings
(:mod:`~motionmae.viz.draw`), the token overlays and the panel grids.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn at 1/16 pixel
ONE = 1 << SHIFT
FONT = cv2.FONT_HERSHEY_SIMPLEX


def check_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` as an array, if it is ``[T, H, W, 3]`` uint8; else ``ValueError``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 [T, H, W, 3]; got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames


def to_fixed(tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates -> OpenCV fixed-point int32 and a finite-mask ``[T, N]``."""
    finite = np.isfinite(tracks).all(-1)
    safe = np.clip(np.nan_to_num(tracks), -1e5, 1e5)
    # Pixel centres are at integer coordinates in OpenCV: (x, y) = (column, row).
    return np.round(safe * ONE).astype(np.int32), finite


def rgb(color: np.ndarray, factor: float = 1.0) -> tuple[int, int, int]:
    """``color * factor`` as the int triple OpenCV takes."""
    c = np.clip(np.round(np.asarray(color, np.float64) * factor), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def dot(img: np.ndarray, p: np.ndarray, color: np.ndarray, radius: int, hollow: bool) -> None:
    """A dot with a black rim at fixed-point ``p``, or only a ring in ``color`` (``hollow``)."""
    center = (int(p[0]), int(p[1]))
    if hollow:
        cv2.circle(img, center, (radius + 1) * ONE, rgb(color), 1, cv2.LINE_AA, SHIFT)
        return
    cv2.circle(img, center, (radius + 1) * ONE, (0, 0, 0), -1, cv2.LINE_AA, SHIFT)
    cv2.circle(img, center, radius * ONE, rgb(color), -1, cv2.LINE_AA, SHIFT)


def cross(img: np.ndarray, p: np.ndarray, color: np.ndarray, radius: int) -> None:
    """An x-shaped cross with a black outline at fixed-point ``p``."""
    r = (radius + 1) * ONE
    x, y = int(p[0]), int(p[1])
    for a, b in (((x - r, y - r), (x + r, y + r)), ((x - r, y + r), (x + r, y - r))):
        cv2.line(img, a, b, (0, 0, 0), 2, cv2.LINE_AA, SHIFT)
    for a, b in (((x - r, y - r), (x + r, y + r)), ((x - r, y + r), (x + r, y - r))):
        cv2.line(img, a, b, rgb(color), 1, cv2.LINE_AA, SHIFT)


def dashed_line(
    img: np.ndarray, p0: np.ndarray, p1: np.ndarray, color: tuple[int, int, int], phase: float,
    dash: float = 4.0, gap: float = 3.0,
) -> float:
    """Dashed fixed-point segment; returns the dash phase (pixels) to continue with."""
    a, b = p0.astype(np.float64), p1.astype(np.float64)
    length = math.hypot(*(b - a)) / ONE
    period = dash + gap
    pos = 0.0
    while pos < length:
        in_period = (phase + pos) % period
        if in_period < dash:
            end = min(length, pos + dash - in_period)
            u0, u1 = pos / length, end / length
            q0 = np.round(a + (b - a) * u0).astype(int)
            q1 = np.round(a + (b - a) * u1).astype(int)
            cv2.line(img, (q0[0], q0[1]), (q1[0], q1[1]), color, 1, cv2.LINE_AA, SHIFT)
            pos = end
        else:
            pos += period - in_period
    return (phase + length) % period
