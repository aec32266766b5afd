"""Drawings on frames: point tracks, token masks and token values, labelled panel grids.

Pure functions on numpy arrays (numpy + OpenCV only): inputs are never modified, outputs are
new ``uint8`` arrays. Frames are RGB ``[T, H, W, 3]`` uint8; points are ``(x, y)`` in pixels of
those frames; token masks and values are ``[L]`` in token order ``(t, h, w)`` with ``t`` over
tubelets (see :mod:`motionmae.tokens`); masks are True = hidden.

Lines and dots are anti-aliased and drawn with sub-pixel precision (OpenCV fixed point).

This module draws point tracks; the rest is beside it and re-exported here:
:mod:`~motionmae.viz.overlays` (token masks and values) and :mod:`~motionmae.viz.panels`
(labelled grids), both on the primitives of :mod:`~motionmae.viz._strokes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from motionmae.viz._strokes import (
    FONT,
    ONE,
    SHIFT,
    check_frames,
    cross,
    dashed_line,
    dot,
    rgb,
    to_fixed,
)
from motionmae.viz.colors import point_colors

__all__ = ["LEGEND_HEIGHT", "draw_track_pairs", "draw_tracks"]

LEGEND_HEIGHT = 18
"""Height in pixels of the legend strip under each frame of :func:`draw_track_pairs`."""


def _check_tracks(frames: np.ndarray, tracks: np.ndarray, name: str = "tracks") -> np.ndarray:
    tracks = np.asarray(tracks, np.float64)
    if tracks.ndim != 3 or tracks.shape[-1] != 2 or tracks.shape[0] != frames.shape[0]:
        raise ValueError(
            f"{name} must be [T, N, 2] (x, y) with T = {frames.shape[0]} frames; "
            f"got {tuple(tracks.shape)}"
        )
    return tracks


def _check_visible(visible: np.ndarray | None, tracks: np.ndarray) -> np.ndarray:
    if visible is None:
        return np.ones(tracks.shape[:2], bool)
    visible = np.asarray(visible).astype(bool)
    if visible.shape != tracks.shape[:2]:
        raise ValueError(f"visible must be [T, N] = {tracks.shape[:2]}; got {visible.shape}")
    return visible


def _check_colors(colors: np.ndarray | Sequence | None, n: int) -> np.ndarray:
    if colors is None:
        return point_colors(n)
    colors = np.asarray(colors)
    if colors.shape != (n, 3):
        raise ValueError(f"colors must be [N, 3] RGB with N = {n}; got {colors.shape}")
    return np.clip(colors, 0, 255).astype(np.uint8)



def _tail_factor(s: int, start: int, t: int, fade: float) -> float:
    """Brightness of the tail segment ending at frame ``s`` (oldest ``fade`` -> newest 1)."""
    return fade + (1.0 - fade) * (s - start) / max(t - start, 1)


def _draw_tails(
    img: np.ndarray, pts: np.ndarray, ok: np.ndarray, colors: np.ndarray, t: int,
    tail: int | None, fade: float, dashed: bool = False,
) -> None:
    start = 0 if tail is None else max(0, t - tail)
    phases = np.zeros(pts.shape[1])
    for s in range(start + 1, t + 1):
        factor = _tail_factor(s, start, t, fade)
        for n in np.flatnonzero(ok[s - 1] & ok[s]):
            color = rgb(colors[n], factor)
            if dashed:
                phases[n] = dashed_line(img, pts[s - 1, n], pts[s, n], color, phases[n])
            else:
                a, b = pts[s - 1, n], pts[s, n]
                cv2.line(img, (a[0], a[1]), (b[0], b[1]), color, 1, cv2.LINE_AA, SHIFT)


# ---------------------------------------------------------------------------------------------
# Tracks


def draw_tracks(
    frames: np.ndarray,
    tracks: np.ndarray,
    visible: np.ndarray | None,
    tail: int | None = None,
    colors: np.ndarray | None = None,
    radius: int = 2,
    fade: float = 0.3,
) -> np.ndarray:
    """Draw point trajectories on a video.

    On frame ``t`` each point gets its trajectory up to ``t`` (a polyline through its past
    positions, or through the last ``tail`` of them) and a dot at its current position. Along
    the tail the colour brightens with time: the oldest segment is the point's colour scaled
    by about ``fade``, the newest by 1.

    Invisible (occluded) points: tail segments with an invisible endpoint are not drawn (an
    occlusion shows as a gap in the tail), and the current position of an invisible point is
    drawn as a hollow ring of radius ``radius + 1`` in the point's colour (its centre is left
    untouched). Non-finite positions are skipped.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        tracks: ``[T, N, 2]`` float, ``(x, y)`` in pixels (pixel centres at integers).
        visible: ``[T, N]`` bool, or None for all visible.
        tail: frames of history to draw (None = all since frame 0; 0 = dots only).
        colors: ``[N, 3]`` uint8 RGB; default :func:`point_colors` (distinct hue per index).
        radius: dot radius in pixels (a 1-pixel black rim is added around it).
        fade: brightness of the oldest tail segment, in ``[0, 1]``.

    Returns:
        ``[T, H, W, 3]`` uint8, a new array.
    """
    frames = check_frames(frames)
    tracks = _check_tracks(frames, tracks)
    visible = _check_visible(visible, tracks)
    colors = _check_colors(colors, tracks.shape[1])
    pts, finite = to_fixed(tracks)
    ok = visible & finite
    out = np.ascontiguousarray(frames).copy()
    for t in range(out.shape[0]):
        img = out[t]
        _draw_tails(img, pts, ok, colors, t, tail, fade)
        for n in np.flatnonzero(finite[t]):
            dot(img, pts[t, n], colors[n], radius, hollow=not visible[t, n])
    return out


def _legend(width: int, radius: int) -> np.ndarray:
    """``[LEGEND_HEIGHT, width, 3]`` strip: solid line + dot = truth, dashed + cross = pred."""
    strip = np.full((LEGEND_HEIGHT, width, 3), 32, np.uint8)
    white = np.array([235, 235, 235])
    y = LEGEND_HEIGHT // 2
    long_labels = ("ground truth", "prediction")
    short_labels = ("GT", "pred")
    scale = 0.35
    sample = 16
    need = sum(cv2.getTextSize(s, FONT, scale, 1)[0][0] for s in long_labels) + 4 * sample
    labels = long_labels if need <= width - 8 else short_labels
    x = 4
    for i, label in enumerate(labels):
        a = np.array([x * ONE, y * ONE])
        b = np.array([(x + sample) * ONE, y * ONE])
        if i == 0:
            cv2.line(strip, (a[0], a[1]), (b[0], b[1]), rgb(white), 1, cv2.LINE_AA, SHIFT)
            dot(strip, b, white, min(radius, 3), hollow=False)
        else:
            dashed_line(strip, a, b, rgb(white), 0.0)
            cross(strip, b, white, min(radius, 3))
        x += sample + 6
        cv2.putText(strip, label, (x, y + 4), FONT, scale, rgb(white), 1, cv2.LINE_AA)
        x += cv2.getTextSize(label, FONT, scale, 1)[0][0] + 12
    return strip


def draw_track_pairs(
    frames: np.ndarray,
    true_tracks: np.ndarray,
    pred_tracks: np.ndarray,
    visible: np.ndarray | None,
    tail: int | None = None,
    colors: np.ndarray | None = None,
    radius: int = 2,
    fade: float = 0.3,
    legend: bool = True,
) -> np.ndarray:
    """Ground-truth and predicted trajectories of the same points, told apart by style.

    Truth: solid tail and a filled dot (as :func:`draw_tracks`). Prediction: dashed tail and a
    cross marker, in the same per-point colour. A thin grey line joins each point's true and
    predicted current positions (the error). Both use the ground-truth ``visible``: nothing is
    drawn for a point where it is invisible, except the hollow ring of :func:`draw_tracks`.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        true_tracks, pred_tracks: ``[T, N, 2]`` float ``(x, y)`` pixels.
        visible: ``[T, N]`` bool (ground truth), or None for all visible.
        legend: append a legend strip under every frame.

    Returns:
        ``[T, H + LEGEND_HEIGHT, W, 3]`` uint8 with ``legend``, else ``[T, H, W, 3]``.
    """
    frames = check_frames(frames)
    true_tracks = _check_tracks(frames, true_tracks, "true_tracks")
    pred_tracks = _check_tracks(frames, pred_tracks, "pred_tracks")
    if pred_tracks.shape != true_tracks.shape:
        raise ValueError(
            f"pred_tracks {pred_tracks.shape} and true_tracks {true_tracks.shape} differ"
        )
    visible = _check_visible(visible, true_tracks)
    colors = _check_colors(colors, true_tracks.shape[1])
    true_pts, true_finite = to_fixed(true_tracks)
    pred_pts, pred_finite = to_fixed(pred_tracks)
    true_ok = visible & true_finite
    pred_ok = visible & pred_finite
    out = np.ascontiguousarray(frames).copy()
    grey = (150, 150, 150)
    for t in range(out.shape[0]):
        img = out[t]
        _draw_tails(img, pred_pts, pred_ok, colors, t, tail, fade, dashed=True)
        _draw_tails(img, true_pts, true_ok, colors, t, tail, fade)
        for n in np.flatnonzero(true_ok[t] & pred_ok[t]):
            a, b = true_pts[t, n], pred_pts[t, n]
            cv2.line(img, (a[0], a[1]), (b[0], b[1]), grey, 1, cv2.LINE_AA, SHIFT)
        for n in np.flatnonzero(pred_ok[t]):
            cross(img, pred_pts[t, n], colors[n], radius)
        for n in np.flatnonzero(true_finite[t]):
            dot(img, true_pts[t, n], colors[n], radius, hollow=not visible[t, n])
    if not legend:
        return out
    strip = _legend(out.shape[2], radius)
    return np.concatenate([out, np.broadcast_to(strip, (out.shape[0], *strip.shape))], axis=1)
