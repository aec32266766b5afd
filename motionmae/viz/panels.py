"""Labelled panel grids: images (or videos, frame by frame) tiled in rows under text labels.

Panels may differ in size (each is placed top-left in its cell); labels are ASCII (OpenCV's
Hershey font), shrunk and then cut with "..." to fit the row.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from motionmae.viz._strokes import FONT

__all__ = ["LABEL_HEIGHT", "make_grid", "make_grid_video"]

LABEL_HEIGHT = 18
"""Height in pixels of the label strip above each row of :func:`make_grid`."""


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only.
    return text.encode("ascii", "replace").decode("ascii")


def _put_label(img: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    """Write ``text`` left-aligned in the box, shrinking then truncating it to fit ``width``."""
    text = _ascii(text)
    scale = 0.45 * height / LABEL_HEIGHT
    while scale > 0.3 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width:
        scale -= 0.05
    while text and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width:
        text = text[:-4] + "..." if len(text) > 4 else ""
    (_, text_h), _ = cv2.getTextSize(text or " ", FONT, scale, 1)
    baseline_y = y + (height + text_h) // 2
    cv2.putText(img, text, (x, baseline_y), FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)


def _as_rgb(panel: np.ndarray) -> np.ndarray:
    panel = np.asarray(panel)
    if panel.dtype != np.uint8:
        raise ValueError(f"panels must be uint8; got {panel.dtype}")
    if panel.ndim == 2:
        return np.repeat(panel[..., None], 3, axis=-1)
    if panel.ndim != 3 or panel.shape[-1] != 3:
        raise ValueError(f"panels must be [H, W, 3] or [H, W]; got {panel.shape}")
    return panel


def make_grid(
    rows: Sequence[Sequence[np.ndarray]],
    labels: Sequence[str] | None = None,
    pad: int = 2,
    background: int = 24,
) -> np.ndarray:
    """Tile images in rows, each row optionally under a text label.

    Panels are placed top-left in their cell; a row is as tall as its tallest panel. With
    ``labels`` every row gets a strip of :data:`LABEL_HEIGHT` pixels above it.

    Args:
        rows: rows of ``[H, W, 3]`` (or ``[H, W]`` grey) uint8 images; sizes may differ.
        labels: one text per row (ASCII; longer texts are shrunk, then cut with "...").
        pad: pixels between panels and around the whole grid.
        background: grey level of the padding and label strips.

    Returns:
        ``[H_out, W_out, 3]`` uint8 with ``H_out = pad + sum_r(LABEL_HEIGHT*[labels] +
        max_h_r + pad)`` and ``W_out = 2 pad + max_r(sum_i w_ri + pad (n_r - 1))``.
    """
    if not rows or any(len(row) == 0 for row in rows):
        raise ValueError("make_grid needs at least one panel in every row")
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"{len(labels)} labels for {len(rows)} rows")
    panels = [[_as_rgb(p) for p in row] for row in rows]
    label_h = LABEL_HEIGHT if labels is not None else 0
    row_h = [max(p.shape[0] for p in row) for row in panels]
    row_w = [sum(p.shape[1] for p in row) + pad * (len(row) - 1) for row in panels]
    width = 2 * pad + max(row_w)
    height = pad + sum(label_h + h + pad for h in row_h)
    out = np.full((height, width, 3), background, np.uint8)
    y = pad
    for r, row in enumerate(panels):
        if labels is not None:
            _put_label(out, labels[r], pad, y, width - 2 * pad, label_h)
            y += label_h
        x = pad
        for panel in row:
            out[y : y + panel.shape[0], x : x + panel.shape[1]] = panel
            x += panel.shape[1] + pad
        y += row_h[r] + pad
    return out


def make_grid_video(
    rows: Sequence[Sequence[np.ndarray]],
    labels: Sequence[str] | None = None,
    pad: int = 2,
    background: int = 24,
) -> np.ndarray:
    """:func:`make_grid` frame by frame: rows of ``[T, H, W, 3]`` videos -> ``[T, H_out, W_out,
    3]`` uint8. Every video needs the same ``T``."""
    lengths = {len(video) for row in rows for video in row}
    if len(lengths) != 1:
        raise ValueError(f"videos in a grid need the same number of frames; got {lengths}")
    frames = lengths.pop()
    return np.stack(
        [make_grid([[v[t] for v in row] for row in rows], labels, pad, background)
         for t in range(frames)]
    )
