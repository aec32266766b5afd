"""The tracks target's points inside a patch: interpolated from the patch centres' tracks
(TrackMAE) or tracked themselves (``targets.tracks.points``, issue 21).

TrackMAE tracks one point per patch and upsamples each tubelet's displacements to ``U x U``
points per patch by bilinear interpolation between patch centres: a token's ``U^2`` values
are a smooth blend of its own and its neighbours' centre motion, so an object smaller than
two patches moves the target of every token around it a little and of none fully. With
``points: tracked`` the ``U x U`` sub-patch centres of every patch
(:func:`~motionmae.motion.protocol.patch_grid_queries`, the positions the default
interpolation samples) are tracked from clip frame 0 by the same tracker, in the loader's
:class:`~motionmae.motion.hooks.TracksHook` (``batch["subpatch_tracks"] [B, T, h*w*U^2, 2]``,
``batch["subpatch_visible"] [B, T, h*w*U^2]``, patch-major), and each token's target is the
displacement of its own points over its tubelet window. The windows, the norms and the rest
of the section are the default's; a token weighs 1 only if its ``U^2`` points are visible at
both ends of its window. The patch-centre tracks are still made, in the same tracker call
(motion-aware masking reads them; with ``lk`` a lost point is carried by its nearest tracked
points, which now include the sub-points). Refused with ``upsample_mode: align_corners``
(other positions), ``horizons`` and ``queries: every_tubelet`` (which read the patch-centre
grid) and ``tracking.where: step``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from motionmae.tokens import TokenGrid

# Where a token's U x U points come from.
TRACK_POINTS = ("interpolated", "tracked")

__all__ = ["TRACK_POINTS", "tracked_point_motion"]


def tracked_point_motion(batch: dict[str, torch.Tensor], grid: TokenGrid, points: int,
                         windows: Callable[[torch.device], tuple[torch.Tensor, torch.Tensor]]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's tracked sub-patch points' displacement over its tubelet window.

    Args:
        batch: with ``subpatch_tracks [B, T, h*w*points, 2]`` float (x, y pixels) and
            ``subpatch_visible [B, T, h*w*points]`` bool, patch-major, the points of a patch
            row-major.
        grid: the token grid (``T = grid.frames``).
        points: points per patch ``U^2``.
        windows: ``device -> (start [t], end [t])``, int64 clip frames of each tubelet's
            window on that device.

    Returns:
        ``(delta [B, L, U^2, 2] float32 pixels, valid [B, L] bool)``, tokens in ``(t, h, w)``
        order: ``valid`` when every point of the token is visible at both ends.
    """
    if "subpatch_tracks" not in batch or "subpatch_visible" not in batch:
        raise KeyError("targets.tracks.points=tracked needs batch['subpatch_tracks'] "
                       "[B, T, h*w*U^2, 2] and batch['subpatch_visible'] [B, T, h*w*U^2], "
                       "made by the loader's tracks hook (tracking.where: workers)")
    tracks, visible = batch["subpatch_tracks"], batch["subpatch_visible"]
    expected = (grid.frames, grid.spatial * points)
    if tracks.ndim != 4 or tuple(tracks.shape[1:]) != (*expected, 2) \
            or tuple(visible.shape) != tuple(tracks.shape[:3]):
        raise ValueError(f"batch['subpatch_tracks']: expected [B, {expected[0]}, "
                         f"{expected[1]}, 2] with visibility [B, {expected[0]}, {expected[1]}],"
                         f" got {tuple(tracks.shape)} and {tuple(visible.shape)}")
    start, end = windows(tracks.device)
    tracks = tracks.float()
    delta = tracks.index_select(1, end) - tracks.index_select(1, start)  # [B, t, N*U^2, 2]
    seen = visible.index_select(1, start) & visible.index_select(1, end)
    delta = delta.reshape(-1, grid.num_tokens, points, 2)
    valid = seen.reshape(-1, grid.num_tokens, points).all(dim=2)
    return delta, valid
