"""Hand-made clip descriptors for the motion suite's reference rows (no learning).

``hof``: histograms of dense optical flow, the classic motion descriptor (Laptev et al. 2008;
Wang et al.'s dense trajectories): DIS flow between consecutive frames, each pixel's flow
vote going to its orientation bin weighted by its magnitude (plus a "no motion" bin counting
pixels under ``still`` px/frame), summed over a ``grid`` x ``grid`` spatial grid x
``time_cells`` time cells. Cells are averaged, not L2-normalised, so that the flow's
magnitude (the speed task's class) survives; a signed square root tames large flows.

``single_frame``: what one frame shows, the suite's proof that a task needs motion: the middle
frame (``T // 2``, the frame whose appearance the task generators draw independently of the
class) as 16 x 16 RGB pixels, an 8-bin colour histogram per channel and a 4 x 4 x 8 gradient
orientation histogram (HOG-like).
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np


def _orientation_histograms(dx: np.ndarray, dy: np.ndarray, grid: int, bins: int,
                            still: float | None) -> np.ndarray:
    """``[grid, grid, bins (+1)]``: per spatial cell, the mean over its pixels of the
    magnitude-weighted orientation votes of vectors ``(dx, dy)`` (images ``[H, W]``); with
    ``still``, vectors shorter than it vote 1 into an extra last bin instead."""
    magnitude = np.hypot(dx, dy)
    # Bins centred on their directions (bin 0 on +x), so that axis-aligned motion does not
    # straddle a bin edge.
    angle = (np.arctan2(dy, dx) + np.pi / bins) % (2 * np.pi)
    index = np.minimum((angle / (2 * np.pi) * bins).astype(np.int64), bins - 1)
    weight = magnitude
    if still is not None:
        slow = magnitude < still
        index = np.where(slow, bins, index)
        weight = np.where(slow, 1.0, magnitude)
    height, width = dx.shape
    rows = np.minimum(np.arange(height) * grid // height, grid - 1)
    cols = np.minimum(np.arange(width) * grid // width, grid - 1)
    cell = rows[:, None] * grid + cols[None, :]
    size = bins + (still is not None)
    hist = np.bincount((cell * size + index).ravel(), weights=weight.ravel(),
                       minlength=grid * grid * size)
    counts = np.bincount(cell.ravel(), minlength=grid * grid)
    return (hist.reshape(grid * grid, size) / counts[:, None]).reshape(grid, grid, size)


def dense_flow(frames: np.ndarray) -> np.ndarray:
    """DIS optical flow ``[T-1, H, W, 2]`` (x, y; pixels/frame) between consecutive frames of
    ``frames [T, H, W, 3]`` uint8."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    return np.stack([dis.calc(a, b, None) for a, b in itertools.pairwise(gray)])


def flow_histograms(flow: np.ndarray, grid: int = 4, time_cells: int = 3, bins: int = 8,
                    still: float = 0.25) -> np.ndarray:
    """HOF of a displacement field ``flow [S, h, w, 2]`` (x, y; pixels per frame, one field
    per frame step, at any spatial sampling ``h x w``): ``[time_cells * grid * grid *
    (bins + 1)]`` float32, the steps split into ``time_cells`` runs (module docstring)."""
    if len(flow) < 1:
        raise ValueError("flow histograms need at least one displacement field")
    cells = np.array_split(np.arange(len(flow)), min(time_cells, len(flow)))
    parts = []
    for members in cells:
        hists = [_orientation_histograms(flow[i, ..., 0], flow[i, ..., 1], grid, bins, still)
                 for i in members]
        parts.append(np.mean(hists, axis=0))
    while len(parts) < time_cells:  # fewer steps than time cells: repeat the last cell
        parts.append(parts[-1])
    return np.sqrt(np.concatenate([p.ravel() for p in parts])).astype(np.float32)


def hof(frames: np.ndarray, grid: int = 4, time_cells: int = 3, bins: int = 8,
        still: float = 0.25) -> np.ndarray:
    """Histogram of optical flow of ``frames [T, H, W, 3]`` uint8: ``[time_cells * grid *
    grid * (bins + 1)]`` float32 (see the module docstring)."""
    if len(frames) < 2:
        raise ValueError(f"HOF needs at least 2 frames, got {len(frames)}")
    return flow_histograms(dense_flow(frames), grid, time_cells, bins, still)


def single_frame(frames: np.ndarray) -> np.ndarray:
    """Appearance of the middle frame of ``frames [T, H, W, 3]`` uint8: ``[16*16*3 + 3*8 +
    4*4*8]`` float32 (see the module docstring)."""
    frame = frames[len(frames) // 2]
    pixels = cv2.resize(frame, (16, 16), interpolation=cv2.INTER_AREA).ravel() / 255.0
    colour = np.concatenate([np.histogram(frame[..., c], bins=8, range=(0, 256))[0]
                             for c in range(3)]) / frame[..., 0].size
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    dx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    # Gradients are unsigned for HOG: doubling the angle folds opposite directions together
    # (8 bins of 22.5 degrees each, centred on 0, 22.5, ... of the gradient's orientation).
    magnitude, angle = np.hypot(dx, dy), 2 * np.arctan2(dy, dx)
    gradients = _orientation_histograms(magnitude * np.cos(angle), magnitude * np.sin(angle),
                                        4, 8, None)
    return np.concatenate([pixels, colour, np.sqrt(gradients.ravel())]).astype(np.float32)
