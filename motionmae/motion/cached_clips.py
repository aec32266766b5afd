"""Which clips of a video the track cache holds, and training clips drawn from them.

``motionmae extract-tracks`` tracks ``cache_clips`` evenly spaced clips per video; a dataset
that reads tracks from the cache (:class:`~motionmae.motion.cache.TrackCache`) must draw its
training clips from those same clips (:func:`sample_cached_clip`), or every sample falls back
to online tracking. Trade-off: temporal jitter is limited to ``cache_clips`` start positions
per video (instead of every frame); spatial augmentation (multi-scale crop, flip) is
unrestricted, because the cached grid covers the whole decoded frame. The teacher feature
cache caches the same clips (:mod:`motionmae.targets.teacher_cache`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["cached_clip_indices", "cached_clip_starts", "sample_cached_clip"]


def cached_clip_starts(num_frames: int, frames: int, stride: int, cache_clips: int) -> np.ndarray:
    """First source frame of each cached clip: ``[C]`` int64, sorted, ``C <= cache_clips``.

    ``cache_clips`` starts evenly spaced over ``[0, room]`` with ``room = max(num_frames -
    span, 0)`` and ``span = (frames - 1) * stride + 1``: ``round(i * room / (cache_clips -
    1))`` (first at 0, last ending at the last frame); one clip is centred (``room // 2``).
    Duplicates (short videos) are dropped. The dataset draws its training clip starts from
    these when a cache is configured (see the module docstring for the trade-off).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frames < 1 or stride < 1 or cache_clips < 1:
        raise ValueError(f"frames, stride and cache_clips must be >= 1, got {frames}, "
                         f"{stride}, {cache_clips}")
    room = max(num_frames - ((frames - 1) * stride + 1), 0)
    if cache_clips == 1:
        return np.array([room // 2], dtype=np.int64)
    starts = [round(i * room / (cache_clips - 1)) for i in range(cache_clips)]
    return np.unique(np.asarray(starts, dtype=np.int64))


def cached_clip_indices(num_frames: int, frames: int, stride: int,
                        cache_clips: int) -> np.ndarray:
    """Source frame indices of every cached clip, ``[C, frames]`` int64: ``start + stride *
    arange(frames)`` clamped to ``num_frames - 1`` (the dataset's padding of short videos)."""
    starts = cached_clip_starts(num_frames, frames, stride, cache_clips)
    indices = starts[:, None] + stride * np.arange(frames, dtype=np.int64)[None, :]
    return np.minimum(indices, num_frames - 1)


def sample_cached_clip(num_frames: int, frames: int, stride: int, cache_clips: int,
                       rng: np.random.Generator) -> np.ndarray:
    """A training clip drawn uniformly from the cached ones: ``[frames]`` int64 indices.

    The drop-in replacement for :func:`motionmae.data.sampling.clip_indices` (training mode)
    when a track cache is configured; one ``rng.integers`` draw.
    """
    clips = cached_clip_indices(num_frames, frames, stride, cache_clips)
    return clips[int(rng.integers(len(clips)))].copy()
