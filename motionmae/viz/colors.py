"""Colours for drawings: distinct per-point hues and value-to-colour maps (numpy + cv2 only).

All colours are RGB ``uint8`` (the frame convention of the project), never BGR.
"""

from __future__ import annotations

import cv2
import numpy as np

_GOLDEN = 0.618033988749895

COLORMAPS: dict[str, int] = {
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "inferno": cv2.COLORMAP_INFERNO,
    "plasma": cv2.COLORMAP_PLASMA,
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
    "hot": cv2.COLORMAP_HOT,
    "cool": cv2.COLORMAP_COOL,
}


def point_colors(n: int, saturation: float = 0.85, value: float = 1.0) -> np.ndarray:
    """``n`` distinct bright colours, ``[n, 3]`` uint8 RGB.

    Hues step by the golden ratio of a turn by point index, so neighbouring indices (which
    are neighbouring grid points for grid queries) get far-apart hues.
    """
    hsv = np.empty((1, n, 3), np.float32)
    hsv[0, :, 0] = (np.arange(n) * _GOLDEN % 1.0) * 360.0
    hsv[0, :, 1] = saturation
    hsv[0, :, 2] = value
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """Map values in ``[0, 1]`` (any shape ``S``; clipped) to colours ``[*S, 3]`` uint8 RGB.

    ``name`` is one of :data:`COLORMAPS` (OpenCV's maps of the matplotlib names).
    """
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {sorted(COLORMAPS)}")
    values = np.asarray(values, np.float64)
    levels = np.round(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    table = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], COLORMAPS[name])[:, 0]
    return table[levels][..., ::-1].copy()  # BGR -> RGB
