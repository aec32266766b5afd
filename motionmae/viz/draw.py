"""Drawings on frames: point tracks, token masks and token values, labelled panel grids.

Pure functions on numpy arrays (numpy + OpenCV only): inputs are never modified, outputs are
new ``uint8`` arrays. Frames are RGB ``[T, H, W, 3]`` uint8; points are ``(x, y)`` in pixels of
those frames; token masks and values are ``[L]`` in token order ``(t, h, w)`` with ``t`` over
tubelets (see :mod:`motionmae.tokens`); masks are True = hidden.

Lines and dots are anti-aliased and drawn with sub-pixel precision (OpenCV fixed point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from motionmae.viz.colors import colormap, point_colors

_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn at 1/16 pixel
_ONE = 1 << _SHIFT
_FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_HEIGHT = 18
"""Height in pixels of the label strip above each row of :func:`make_grid`."""
LEGEND_HEIGHT = 18
"""Height in pixels of the legend strip under each frame of :func:`draw_track_pairs`."""


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


# ---------------------------------------------------------------------------------------------
# Checks and small helpers


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 [T, H, W, 3]; got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames


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


def _fixed(tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates -> OpenCV fixed-point int32 and a finite-mask ``[T, N]``."""
    finite = np.isfinite(tracks).all(-1)
    safe = np.clip(np.nan_to_num(tracks), -1e5, 1e5)
    # Pixel centres are at integer coordinates in OpenCV: (x, y) = (column, row).
    return np.round(safe * _ONE).astype(np.int32), finite


def _rgb(color: np.ndarray, factor: float = 1.0) -> tuple[int, int, int]:
    c = np.clip(np.round(np.asarray(color, np.float64) * factor), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def _dot(img: np.ndarray, p: np.ndarray, color: np.ndarray, radius: int, hollow: bool) -> None:
    center = (int(p[0]), int(p[1]))
    if hollow:
        cv2.circle(img, center, (radius + 1) * _ONE, _rgb(color), 1, cv2.LINE_AA, _SHIFT)
        return
    cv2.circle(img, center, (radius + 1) * _ONE, (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, center, radius * _ONE, _rgb(color), -1, cv2.LINE_AA, _SHIFT)


def _cross(img: np.ndarray, p: np.ndarray, color: np.ndarray, radius: int) -> None:
    r = (radius + 1) * _ONE
    x, y = int(p[0]), int(p[1])
    for a, b in (((x - r, y - r), (x + r, y + r)), ((x - r, y + r), (x + r, y - r))):
        cv2.line(img, a, b, (0, 0, 0), 2, cv2.LINE_AA, _SHIFT)
    for a, b in (((x - r, y - r), (x + r, y + r)), ((x - r, y + r), (x + r, y - r))):
        cv2.line(img, a, b, _rgb(color), 1, cv2.LINE_AA, _SHIFT)


def _dashed(
    img: np.ndarray, p0: np.ndarray, p1: np.ndarray, color: tuple[int, int, int], phase: float,
    dash: float = 4.0, gap: float = 3.0,
) -> float:
    """Dashed fixed-point segment; returns the dash phase (pixels) to continue with."""
    a, b = p0.astype(np.float64), p1.astype(np.float64)
    length = math.hypot(*(b - a)) / _ONE
    period = dash + gap
    pos = 0.0
    while pos < length:
        in_period = (phase + pos) % period
        if in_period < dash:
            end = min(length, pos + dash - in_period)
            u0, u1 = pos / length, end / length
            q0 = np.round(a + (b - a) * u0).astype(int)
            q1 = np.round(a + (b - a) * u1).astype(int)
            cv2.line(img, (q0[0], q0[1]), (q1[0], q1[1]), color, 1, cv2.LINE_AA, _SHIFT)
            pos = end
        else:
            pos += period - in_period
    return (phase + length) % period


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
            color = _rgb(colors[n], factor)
            if dashed:
                phases[n] = _dashed(img, pts[s - 1, n], pts[s, n], color, phases[n])
            else:
                a, b = pts[s - 1, n], pts[s, n]
                cv2.line(img, (a[0], a[1]), (b[0], b[1]), color, 1, cv2.LINE_AA, _SHIFT)


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
    frames = _check_frames(frames)
    tracks = _check_tracks(frames, tracks)
    visible = _check_visible(visible, tracks)
    colors = _check_colors(colors, tracks.shape[1])
    pts, finite = _fixed(tracks)
    ok = visible & finite
    out = np.ascontiguousarray(frames).copy()
    for t in range(out.shape[0]):
        img = out[t]
        _draw_tails(img, pts, ok, colors, t, tail, fade)
        for n in np.flatnonzero(finite[t]):
            _dot(img, pts[t, n], colors[n], radius, hollow=not visible[t, n])
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
    need = sum(cv2.getTextSize(s, _FONT, scale, 1)[0][0] for s in long_labels) + 4 * sample
    labels = long_labels if need <= width - 8 else short_labels
    x = 4
    for i, label in enumerate(labels):
        a = np.array([x * _ONE, y * _ONE])
        b = np.array([(x + sample) * _ONE, y * _ONE])
        if i == 0:
            cv2.line(strip, (a[0], a[1]), (b[0], b[1]), _rgb(white), 1, cv2.LINE_AA, _SHIFT)
            _dot(strip, b, white, min(radius, 3), hollow=False)
        else:
            _dashed(strip, a, b, _rgb(white), 0.0)
            _cross(strip, b, white, min(radius, 3))
        x += sample + 6
        cv2.putText(strip, label, (x, y + 4), _FONT, scale, _rgb(white), 1, cv2.LINE_AA)
        x += cv2.getTextSize(label, _FONT, scale, 1)[0][0] + 12
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
    frames = _check_frames(frames)
    true_tracks = _check_tracks(frames, true_tracks, "true_tracks")
    pred_tracks = _check_tracks(frames, pred_tracks, "pred_tracks")
    if pred_tracks.shape != true_tracks.shape:
        raise ValueError(
            f"pred_tracks {pred_tracks.shape} and true_tracks {true_tracks.shape} differ"
        )
    visible = _check_visible(visible, true_tracks)
    colors = _check_colors(colors, true_tracks.shape[1])
    true_pts, true_finite = _fixed(true_tracks)
    pred_pts, pred_finite = _fixed(pred_tracks)
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
            cv2.line(img, (a[0], a[1]), (b[0], b[1]), grey, 1, cv2.LINE_AA, _SHIFT)
        for n in np.flatnonzero(pred_ok[t]):
            _cross(img, pred_pts[t, n], colors[n], radius)
        for n in np.flatnonzero(true_finite[t]):
            _dot(img, true_pts[t, n], colors[n], radius, hollow=not visible[t, n])
    if not legend:
        return out
    strip = _legend(out.shape[2], radius)
    return np.concatenate([out, np.broadcast_to(strip, (out.shape[0], *strip.shape))], axis=1)


# ---------------------------------------------------------------------------------------------
# Token overlays


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
    frames = _check_frames(frames)
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
    frames = _check_frames(frames)
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


# ---------------------------------------------------------------------------------------------
# Panels


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only.
    return text.encode("ascii", "replace").decode("ascii")


def _put_label(img: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    """Write ``text`` left-aligned in the box, shrinking then truncating it to fit ``width``."""
    text = _ascii(text)
    scale = 0.45 * height / LABEL_HEIGHT
    while scale > 0.3 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width:
        scale -= 0.05
    while text and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width:
        text = text[:-4] + "..." if len(text) > 4 else ""
    (_, text_h), _ = cv2.getTextSize(text or " ", _FONT, scale, 1)
    baseline_y = y + (height + text_h) // 2
    cv2.putText(img, text, (x, baseline_y), _FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)


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
