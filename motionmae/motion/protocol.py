"""What every tracker shares: the point-tracking protocol, input validation, query grids, and
the grey-frame, sampling and appearance helpers the backends compute with.

Conventions shared by every backend in :mod:`motionmae.motion`:

* ``frames``: ``np.ndarray`` ``[T, H, W, 3]`` ``uint8`` RGB.
* ``queries``: ``np.ndarray`` ``[N, 3]`` ``float32`` rows ``(t, x, y)``: ``t`` an integer frame
  index in ``[0, T)``; ``x, y`` pixel coordinates in the frames given.
* Pixel centres lie at integer coordinates: ``x = 0`` is the centre of the first column, so the
  frame covers ``x`` in ``[-0.5, W - 0.5]`` and ``y`` in ``[-0.5, H - 0.5]`` (the OpenCV
  convention; ``grid_sample(align_corners=True)`` in torch terms).
* Results: ``tracks`` ``[T, N, 2]`` ``float32`` ``(x, y)`` pixels and ``visible`` ``[T, N]``
  ``bool``. Every query is tracked forwards and backwards from its own query frame, and
  ``tracks[t_n, n]`` equals the query position.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor

__all__ = [
    "COTRACKER_RESOLUTION",
    "QUERY_GRIDS",
    "BatchedTracker",
    "PatchStats",
    "PointTracker",
    "appearance_match",
    "apply_homography",
    "check_grid_settings",
    "cotracker_grid_queries",
    "grid_queries",
    "in_frame",
    "match_patches",
    "patch_center_queries",
    "patch_grid_queries",
    "patch_stats",
    "query_grid",
    "sample_bilinear",
    "sample_patches",
    "to_gray",
    "validate_inputs",
    "validate_queries",
]


@runtime_checkable
class PointTracker(Protocol):
    """Anything that tracks query points through a clip.

    ``track(frames [T,H,W,3] uint8 RGB, queries [N,3] float32 (t, x, y) pixels)`` returns
    ``(tracks [T,N,2] float32 (x, y) pixels, visible [T,N] bool)``; see the module docstring for
    the coordinate conventions.
    """

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries`` through ``frames``; returns ``(tracks, visible)``."""
        ...


class BatchedTracker(Protocol):
    """A tracker's batched form, what ``tracking.where: step`` runs inside the training step
    (a tracker's spec declares it: :class:`~motionmae.motion.registry.TrackerSpec`).

    ``(frames [B,T,H,W,3] uint8 or float grey levels 0..255, queries [B,N,3] (t, x, y))`` ->
    ``(tracks [B,T,N,2] float32 pixels, visible [B,T,N] bool)`` on the frames' device, the
    tracks the tracker's ``track`` gives each clip (up to float rounding), without a host
    sync when the queries are in host memory.
    """

    def __call__(self, frames: torch.Tensor,
                 queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Track every clip's ``queries`` through its ``frames``; returns ``(tracks,
        visible)``."""
        ...


def validate_inputs(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check a ``track`` call's inputs; return them as contiguous ``uint8`` / ``float32`` arrays.

    Args:
        frames: ``[T, H, W, 3]`` ``uint8`` RGB, ``T >= 1``, ``H, W >= 2``.
        queries: ``[N, 3]`` rows ``(t, x, y)``; ``t`` integer-valued in ``[0, T)``, ``x`` in
            ``[-0.5, W - 0.5]`` and ``y`` in ``[-0.5, H - 0.5]`` pixels. ``N = 0`` is allowed.
            Any real dtype is accepted and converted to ``float32``.

    Returns:
        ``(frames, queries)``: ``frames`` unchanged but C-contiguous, ``queries`` ``float32``.

    Raises:
        ValueError: naming the argument and what is wrong with it.
    """
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames: expected a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected shape [T, H, W, 3] (ndim 4, RGB), "
                         f"got ndim {frames.ndim} shape {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames: expected dtype uint8 (0..255 RGB), got {frames.dtype}")
    t, h, w = frames.shape[:3]
    if t < 1 or h < 2 or w < 2:
        raise ValueError(f"frames: need T >= 1 and H, W >= 2, got shape {tuple(frames.shape)}")
    q = validate_queries(queries, t, h, w)
    return np.ascontiguousarray(frames), q


def validate_queries(queries: np.ndarray, num_frames: int, height: int,
                     width: int) -> np.ndarray:
    """Check ``[N, 3]`` ``(t, x, y)`` queries against a clip of ``num_frames`` frames of
    ``width`` x ``height`` pixels (rules as in :func:`validate_inputs`); returns them as
    contiguous ``float32``. Raises ``ValueError`` naming the first bad row."""
    t, h, w = num_frames, height, width
    if not isinstance(queries, np.ndarray):
        raise ValueError(f"queries: expected a numpy array, got {type(queries).__name__}")
    if queries.ndim != 2 or queries.shape[1] != 3:
        raise ValueError(f"queries: expected shape [N, 3] with rows (t, x, y), "
                         f"got shape {tuple(queries.shape)}")
    if not (np.issubdtype(queries.dtype, np.floating) or np.issubdtype(queries.dtype, np.integer)):
        raise ValueError(f"queries: expected a real (float or int) dtype, got {queries.dtype}")
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if not np.all(np.isfinite(q)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(q), axis=1))[0])
        raise ValueError(f"queries: row {bad} is not finite: {q[bad].tolist()}")
    qt = q[:, 0]
    bad_t = (qt != np.round(qt)) | (qt < 0) | (qt > t - 1)
    if np.any(bad_t):
        i = int(np.flatnonzero(bad_t)[0])
        raise ValueError(f"queries: row {i} has frame index t={qt[i]:g}, expected an integer in "
                         f"[0, {t - 1}] (clip has T={t} frames)")
    out_x = (q[:, 1] < -0.5) | (q[:, 1] > w - 0.5)
    out_y = (q[:, 2] < -0.5) | (q[:, 2] > h - 0.5)
    if np.any(out_x | out_y):
        i = int(np.flatnonzero(out_x | out_y)[0])
        raise ValueError(f"queries: row {i} point (x={q[i, 1]:g}, y={q[i, 2]:g}) is out of range "
                         f"of the {w}x{h} frame: x must be in [-0.5, {w - 0.5}], "
                         f"y in [-0.5, {h - 0.5}] (pixel centres at integers)")
    return q


def in_frame(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Whether points lie inside a ``width`` x ``height`` frame.

    Args:
        points: ``[..., 2]`` ``(x, y)`` pixels, pixel centres at integers.
    Returns:
        ``[...]`` bool: ``-0.5 <= x <= W - 0.5`` and ``-0.5 <= y <= H - 0.5`` (and finite).
    """
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)


def _cell_centres(size: int, cells: int) -> np.ndarray:
    # centre of cell i of ``cells`` equal cells over [-0.5, size - 0.5]
    return (np.arange(cells, dtype=np.float64) + 0.5) * size / cells - 0.5


def grid_queries(height: int, width: int, grid: int, t: int = 0) -> np.ndarray:
    """``grid`` x ``grid`` queries at the cell centres of frame ``t``.

    The frame is cut into ``grid`` x ``grid`` equal cells; cell ``(i, j)`` (row ``i``, column
    ``j``) has its centre at ``x = (j + 0.5) * W / G - 0.5``, ``y = (i + 0.5) * H / G - 0.5`` in
    pixel-centre coordinates (pixel centres at integers). For ``W = 224, G = 14`` that is
    ``x = 7.5, 23.5, ...``: the centre of each 16-pixel patch.

    Args:
        height, width: frame size ``H``, ``W`` in pixels.
        grid: ``G >= 1`` cells per side.
        t: query frame index.

    Returns:
        ``[G * G, 3]`` ``float32`` rows ``(t, x, y)``, row-major: query ``i * G + j`` is cell
        ``(i, j)``, the same order as ViT patch tokens.
    """
    if grid < 1:
        raise ValueError(f"grid: must be >= 1, got {grid}")
    if height < 1 or width < 1:
        raise ValueError(f"height, width: must be >= 1, got {height}x{width}")
    if t < 0:
        raise ValueError(f"t: must be >= 0, got {t}")
    ys, xs = np.meshgrid(_cell_centres(height, grid), _cell_centres(width, grid), indexing="ij")
    out = np.stack([np.full(xs.size, t, dtype=np.float64), xs.ravel(), ys.ravel()], axis=1)
    return out.astype(np.float32)


def patch_grid_queries(height: int, width: int, patch: int, per_side: int = 1,
                       t: int = 0) -> np.ndarray:
    """``per_side`` x ``per_side`` queries inside every ``patch`` x ``patch`` patch of frame ``t``.

    Patches tile the frame from the top-left corner (``H // patch`` rows, ``W // patch``
    columns; a remainder at the right/bottom edge is not covered). Inside a patch the points sit
    at the centres of a ``per_side`` x ``per_side`` sub-grid: for the patch whose top-left pixel
    is ``(px, py)`` the points are ``x = px + (j + 0.5) * patch / per_side - 0.5``, likewise ``y``.

    Args:
        height, width: frame size in pixels.
        patch: patch side in pixels.
        per_side: points per patch side (``K = per_side ** 2`` points per patch).
        t: query frame index.

    Returns:
        ``[P * K, 3]`` ``float32`` rows ``(t, x, y)``, patch-major: rows ``p * K .. p * K + K - 1``
        belong to patch ``p`` (row-major patch order, ViT token order), points inside a patch
        row-major.
    """
    if patch < 1 or per_side < 1:
        raise ValueError(f"patch and per_side: must be >= 1, got patch={patch}, "
                         f"per_side={per_side}")
    gh, gw = height // patch, width // patch
    if gh < 1 or gw < 1:
        raise ValueError(f"patch: {patch} px is larger than the {width}x{height} frame")
    sub = (np.arange(per_side, dtype=np.float64) + 0.5) * patch / per_side - 0.5
    py, px = np.meshgrid(np.arange(gh) * patch, np.arange(gw) * patch, indexing="ij")
    sy, sx = np.meshgrid(sub, sub, indexing="ij")
    x = px.reshape(-1, 1) + sx.reshape(1, -1)
    y = py.reshape(-1, 1) + sy.reshape(1, -1)
    out = np.stack([np.full(x.size, t, dtype=np.float64), x.ravel(), y.ravel()], axis=1)
    return out.astype(np.float32)


def patch_center_queries(height: int, width: int, patch: int, t: int = 0) -> np.ndarray:
    """One query at the centre of every ``patch`` x ``patch`` patch of frame ``t``.

    Same as ``patch_grid_queries(height, width, patch, 1, t)``: ``[(H//patch) * (W//patch), 3]``
    ``float32`` rows ``(t, x, y)`` in ViT token order, ``x = px + patch / 2 - 0.5``. Equal to
    :func:`grid_queries` when ``H == W`` is a multiple of ``patch``.
    """
    return patch_grid_queries(height, width, patch, 1, t)


# CoTracker3's model resolution (height, width): its predictor lays its query grid out in these
# pixels and maps it back to the clip's with align_corners=True scaling.
COTRACKER_RESOLUTION = (384, 512)
# The query grids of ``tracking.grid``: one point per patch, at the patch centres or where
# CoTracker's ``grid_size`` grid puts them (TrackMAE's official queries).
QUERY_GRIDS = ("patch_centres", "cotracker")


def check_grid_settings(patch: int, grid: str, frame_step: int) -> None:
    """Raise ``ValueError`` naming the first bad setting of a patch grid tracked every
    ``frame_step`` frames (what the loader hook and the step's tracker both take)."""
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    if grid not in QUERY_GRIDS:
        raise ValueError(f"grid must be one of {list(QUERY_GRIDS)}, got {grid!r}")
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")


def cotracker_grid_queries(height: int, width: int, rows: int, cols: int, t: int = 0,
                           resolution: tuple[int, int] = COTRACKER_RESOLUTION) -> np.ndarray:
    """The query grid CoTracker's predictor tracks for ``grid_size`` (TrackMAE's queries).

    CoTracker lays a regular grid over its model resolution ``(R_h, R_w)`` with a margin
    ``m = R_w / 64`` (the width's, on both axes): ``x_j = m + j (R_w - 2m) / (cols - 1)``,
    ``y_i = m + i (R_h - 2m) / (rows - 1)``, and maps it to the clip's pixels with
    ``align_corners=True`` scaling, ``x (W - 1) / (R_w - 1)``, ``y (H - 1) / (R_h - 1)``.
    For a 224 x 224 clip and a 14 x 14 grid: ``x = 3.49 .. 219.95`` px, 16.65 px apart
    (the patch centres are ``7.5 .. 215.5``, 16 px apart). A side of one point sits at the
    middle, ``R / 2``.

    Args:
        height, width: clip size ``H``, ``W`` in pixels.
        rows, cols: points per column and per row (CoTracker's ``grid_size`` for both).
        t: query frame index.
        resolution: CoTracker's model resolution ``(R_h, R_w)``.

    Returns:
        ``[rows * cols, 3]`` ``float32`` rows ``(t, x, y)``, row-major (ViT token order).
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols: must be >= 1, got {rows}x{cols}")
    if height < 2 or width < 2:
        raise ValueError(f"height, width: must be >= 2, got {height}x{width}")
    res_h, res_w = resolution
    margin = res_w / 64

    def axis(points: int, extent: int, size: int) -> np.ndarray:
        model = (np.array([extent / 2]) if points == 1
                 else np.linspace(margin, extent - margin, points))
        return model * (size - 1) / (extent - 1)

    ys, xs = np.meshgrid(axis(rows, res_h, height), axis(cols, res_w, width), indexing="ij")
    out = np.stack([np.full(xs.size, t, dtype=np.float64), xs.ravel(), ys.ravel()], axis=1)
    return out.astype(np.float32)


def query_grid(kind: str, height: int, width: int, patch: int, t: int = 0) -> np.ndarray:
    """One query per ``patch`` x ``patch`` patch of frame ``t``, in ViT token order.

    Args:
        kind: ``patch_centres`` (:func:`patch_center_queries`) or ``cotracker``
            (:func:`cotracker_grid_queries` with ``H // patch`` x ``W // patch`` points).
        height, width: frame size in pixels.
        patch: patch side in pixels.
        t: query frame index.

    Returns:
        ``[(H // patch) * (W // patch), 3]`` ``float32`` rows ``(t, x, y)``.
    """
    if kind == "patch_centres":
        return patch_center_queries(height, width, patch, t)
    if kind == "cotracker":
        if patch < 1 or height < patch or width < patch:
            raise ValueError(f"patch: {patch} px does not fit the {width}x{height} frame")
        return cotracker_grid_queries(height, width, height // patch, width // patch, t)
    raise ValueError(f"query grid must be one of {list(QUERY_GRIDS)}, got {kind!r}")


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


@functools.lru_cache(maxsize=8)
def _patch_offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``([1, size * size], [1, size * size])`` float32 x and y offsets of a patch's pixels
    from its centre (read-only: shared by every call)."""
    r = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0)
    oy, ox = np.meshgrid(r, r, indexing="ij")
    ox, oy = ox.reshape(1, -1), oy.reshape(1, -1)
    ox.flags.writeable = oy.flags.writeable = False
    return ox, oy


def sample_patches(gray: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly sampled ``size`` x ``size`` patches of a ``[H, W]`` uint8 image centred on
    ``[N, 2]`` ``(x, y)`` points (1/32-pixel OpenCV precision, border replicated).
    Returns ``[N, size * size]`` float32."""
    n = len(points)
    if n == 0:
        return np.zeros((0, size * size), np.float32)
    ox, oy = _patch_offsets(size)
    out = np.empty((n, size * size), np.float32)
    chunk = 16384  # remap maps must stay below 32767 rows
    for s in range(0, n, chunk):
        p = np.asarray(points[s:s + chunk], np.float32)
        mx = np.ascontiguousarray(p[:, :1] + ox)
        my = np.ascontiguousarray(p[:, 1:2] + oy)
        out[s:s + chunk] = cv2.remap(gray, mx, my, interpolation=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
    return out


@dataclass(frozen=True)
class PatchStats:
    """Per-patch statistics :func:`match_patches` compares: ``mean [N, 1]``, ``centred [N, P]``
    (the patch minus its mean) and ``std [N]``, of numpy arrays or torch tensors."""

    mean: Array
    centred: Array
    std: Array

    def __getitem__(self, index: Array) -> PatchStats:
        """The statistics of the patches ``index`` selects."""
        return PatchStats(self.mean[index], self.centred[index], self.std[index])


def patch_stats(patches: Array) -> PatchStats:
    """:class:`PatchStats` of ``[N, P]`` float32 grey values (numpy or torch)."""
    mean = patches.mean(1, keepdims=True)
    centred = patches - mean
    return PatchStats(mean, centred, (centred * centred).mean(1) ** 0.5)


def match_patches(template: PatchStats, patch: PatchStats, ncc_threshold: float,
                  flat_std: float, flat_mean: float) -> Array:
    """:func:`appearance_match` on precomputed :class:`PatchStats` (a tracker computes its
    query templates' once); ``[N]`` bool."""
    ncc = (template.centred * patch.centred).mean(1) / (template.std * patch.std).clip(min=1e-6)
    t_flat, p_flat = template.std < flat_std, patch.std < flat_std
    textured = ~t_flat & ~p_flat & (ncc >= ncc_threshold)
    flat = t_flat & p_flat & (abs(template.mean - patch.mean)[:, 0] <= flat_mean)
    return textured | flat


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
    return match_patches(patch_stats(template), patch_stats(patch), ncc_threshold, flat_std,
                         flat_mean)
