"""The cached query grid, and tracks of arbitrary points interpolated from its tracks.

The track cache tracks a regular grid of query points over the whole decoded frame
(:func:`dense_grid`); a training sample needs the tracks of its own points (the patch centres
of its crop), which :func:`interpolate_grid_tracks` reads off the grid's tracks by bilinear
interpolation (:class:`~motionmae.motion.hooks.TracksHook` does this per sample).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dense_grid", "grid_points", "interpolate_grid_tracks"]


def dense_grid(height: int, width: int, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Axes of the cached query grid over a ``width x height`` frame.

    ``nx = ceil((W - 1) / spacing) + 1`` points evenly spaced from ``x = 0`` to ``W - 1``
    (pixel centres at integers), likewise ``y``: the grid's hull is the whole frame but its
    outermost half pixel, so every patch centre of any crop can be interpolated.

    Returns:
        ``(xs [nx], ys [ny])`` float32 pixels; query ``i * nx + j`` is ``(xs[j], ys[i])``.
    """
    if height < 2 or width < 2:
        raise ValueError(f"frame must be at least 2x2, got {width}x{height}")
    if not spacing > 0:
        raise ValueError(f"spacing must be > 0, got {spacing}")
    nx = int(np.ceil((width - 1) / spacing)) + 1
    ny = int(np.ceil((height - 1) / spacing)) + 1
    xs = np.linspace(0.0, width - 1, nx)
    ys = np.linspace(0.0, height - 1, ny)
    return xs.astype(np.float32), ys.astype(np.float32)


def grid_points(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``[ny * nx, 2]`` float32 (x, y) points of the grid with axes ``xs``, ``ys`` (row-major,
    y outer)."""
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def interpolate_grid_tracks(tracks: np.ndarray, visible: np.ndarray, xs: np.ndarray,
                            ys: np.ndarray, points: np.ndarray,
                            min_visible_weight: float | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Tracks of arbitrary points from the tracks of a regular query grid.

    Bilinear interpolation, at each frame, of the tracked positions of the 4 grid queries
    around each point's query position: exact for any affine motion field, a first-order
    approximation elsewhere.

    Args:
        tracks: ``[T, ny * nx, 2]`` (x, y) pixels of the grid queries (row-major, y outer).
        visible: ``[T, ny * nx]`` bool.
        xs, ys: ``[nx]``, ``[ny]`` evenly spaced grid axes, pixels (``nx, ny >= 2``).
        points: ``[P, 2]`` (x, y) query positions, same pixels as the grid, at its query frame.

        min_visible_weight: ``None`` (default): a point is visible when all 4 grid
            neighbours are. A number ``m`` in ``(0, 1]``: a point is visible when its visible
            neighbours carry at least ``m`` of its bilinear weight, and its position is
            interpolated from the visible neighbours only (weights renormalised).

    Returns:
        ``(tracks [T, P, 2] float64, visible [T, P] bool)``. Points outside the grid's hull
        are never visible (their tracks are those of the nearest hull point).

    Measured (translating real texture, 5 crops/flips x 3 clips, against ground truth;
    online LK on the clip: EPE 0.16 px, visible recall 0.98): all 4 neighbours gives EPE 0.11
    px but recall 0.93 (grid points on the frame border are often lost by LK, and one lost
    neighbour hides the point); ``m = 0.5`` gives EPE 0.17 px, recall 0.98.
    """
    if min_visible_weight is not None and not 0.0 < min_visible_weight <= 1.0:
        raise ValueError(f"min_visible_weight must be in (0, 1] or None, "
                         f"got {min_visible_weight}")
    nx, ny = len(xs), len(ys)
    t_len = tracks.shape[0]
    grid = np.asarray(tracks, np.float64).reshape(t_len, ny, nx, 2)
    vis = np.asarray(visible, bool).reshape(t_len, ny, nx)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    u = (pts[:, 0] - float(xs[0])) / ((float(xs[-1]) - float(xs[0])) / (nx - 1))
    v = (pts[:, 1] - float(ys[0])) / ((float(ys[-1]) - float(ys[0])) / (ny - 1))
    eps = 1e-6
    inside = (u >= -eps) & (u <= nx - 1 + eps) & (v >= -eps) & (v <= ny - 1 + eps)
    u = np.clip(u, 0.0, nx - 1)
    v = np.clip(v, 0.0, ny - 1)
    j0 = np.minimum(np.floor(u).astype(np.int64), nx - 2)
    i0 = np.minimum(np.floor(v).astype(np.int64), ny - 2)
    fu = (u - j0)[None, :, None]
    fv = (v - i0)[None, :, None]
    w = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv])  # [4,1,P,1]
    corners = np.stack([grid[:, i0, j0], grid[:, i0, j0 + 1], grid[:, i0 + 1, j0],
                        grid[:, i0 + 1, j0 + 1]])  # [4, T, P, 2]
    seen4 = np.stack([vis[:, i0, j0], vis[:, i0, j0 + 1], vis[:, i0 + 1, j0],
                      vis[:, i0 + 1, j0 + 1]])  # [4, T, P]
    if min_visible_weight is None:
        out = (w * corners).sum(0)
        seen = seen4.all(0)
    else:
        wv = w * seen4[..., None]
        total = wv.sum(0)
        out = np.where(total > 1e-9, (wv * corners).sum(0) / np.maximum(total, 1e-9),
                       (w * corners).sum(0))
        seen = total[..., 0] >= min_visible_weight - 1e-9
    return out, seen & inside[None, :]
