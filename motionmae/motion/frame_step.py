"""Tracking every ``step``-th frame of a clip (``tracking.frame_step``).

TrackMAE's official code gives CoTracker only the frames ``0, 2, ..., 14`` of a 16-frame
clip (``video[:, ::2]``) and reads its target from those frames only. :func:`track_every`
does the same with any :class:`~motionmae.motion.protocol.PointTracker`: the tracker sees
``frames[::step]`` and nothing else, and its answers land on the clip frames it saw, so the
result keeps the ``[T, N, 2]`` layout every consumer expects.

The frames the tracker did not see get the straight line between the tracked frames around
them (visible when both ends are); frames after the last tracked one (frame 15 of 16 for
``step = 2``) keep the last tracked position and visibility: no motion is invented past what
the tracker saw. The official windows of the tracks target read only tracked frames
(``PretrainConfig.validate`` refuses settings where it would not); motion-aware masking reads
every frame, the filled ones included.
"""

from __future__ import annotations

import numpy as np

from motionmae.motion.protocol import PointTracker, validate_inputs
from motionmae.motion.registry import track

__all__ = ["fill_skipped_frames", "track_every"]


def track_every(tracker: PointTracker, frames: np.ndarray, queries: np.ndarray,
                step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Track ``queries`` through ``frames[::step]`` only; fill the frames in between.

    Args:
        tracker: any point tracker.
        frames: ``[T, H, W, 3]`` uint8 RGB.
        queries: ``[N, 3]`` ``(t, x, y)``; every ``t`` a multiple of ``step``.
        step: ``1`` tracks every frame (the tracker's own answer, unchanged).

    Returns:
        ``(tracks [T, N, 2] float32 pixels, visible [T, N] bool)``: frames ``0, step, ...``
        are the tracker's answer on the subsampled clip; the others as in the module doc.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if step == 1:
        return tracker.track(frames, queries)
    frames, q = validate_inputs(frames, queries)
    if np.any(q[:, 0] % step):
        row = int(np.flatnonzero(q[:, 0] % step)[0])
        raise ValueError(f"queries: row {row} has frame index t={q[row, 0]:g}, which the "
                         f"tracker does not see (it sees frames 0, {step}, {2 * step}, ...)")
    seen = q.copy()
    seen[:, 0] /= step
    # registry.track answers a one-frame clip itself (not every backend can)
    tracks, visible = track(frames[::step], seen, tracker)
    return fill_skipped_frames(tracks, visible, step, len(frames))


def fill_skipped_frames(tracks: np.ndarray, visible: np.ndarray, step: int,
                        frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Spread tracks of clip frames ``0, step, 2 step, ...`` over all ``frames`` clip frames.

    Args:
        tracks: ``[S, N, 2]`` pixels at the tracked frames, ``S = ceil(frames / step)``.
        visible: ``[S, N]`` bool.
        step: clip frames between tracked frames.
        frames: clip frames ``T``.

    Returns:
        ``(tracks [T, N, 2] float32, visible [T, N] bool)``: clip frame ``k * step`` is
        tracked frame ``k``; frame ``k * step + r`` (``0 < r < step``) is
        ``tracks[k] + (r / step) (tracks[k + 1] - tracks[k])``, visible when both are;
        frames past the last tracked one copy it.
    """
    seen = len(tracks)
    if seen != -(-frames // step):
        raise ValueError(f"tracks: {seen} tracked frames, expected ceil({frames} / {step})")
    position = np.arange(frames, dtype=np.float64) / step
    before = np.minimum(np.floor(position).astype(np.int64), seen - 1)
    # a tracked frame is its own answer; a skipped one lies between two (or past the last)
    after = np.where(position > before, np.minimum(before + 1, seen - 1), before)
    frac = np.where(after > before, position - before, 0.0)[:, None, None]
    tr = np.asarray(tracks, np.float64)
    out = tr[before] + frac * (tr[after] - tr[before])
    vis = np.asarray(visible, bool)
    return out.astype(np.float32), vis[before] & vis[after]
