"""Fill the track cache: ``motionmae extract-tracks`` as a library call.

:func:`extract_tracks` runs the cache's extraction driver (:func:`motionmae.cache.extract`:
sharded, resumable, parallel, with progress) with a :class:`TrackJob`: for each video without
a valid entry, decode its cached clips (:meth:`~motionmae.cache.layout.ClipLayout.indices`)
at the cache's ``decode_size``, track the dense query grid
(:func:`~motionmae.motion.grid_tracks.dense_grid`) from each clip's first frame (through every
``frame_step``-th frame: :mod:`~motionmae.motion.frame_step`) and store the result.

Every setting comes from the cache (:class:`~motionmae.motion.cache.CacheSettings`): the
settings are part of the cache key, so they have one source of truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from motionmae.cache.extraction import ExtractStats, ProgressFn, extract
from motionmae.data.video_reader import VideoReader
from motionmae.motion.cache import CacheSettings, TrackCache
from motionmae.motion.cached_tracks import CachedTracks
from motionmae.motion.frame_step import track_every
from motionmae.motion.grid_tracks import dense_grid
from motionmae.motion.protocol import PointTracker
from motionmae.motion.registry import make_tracker

__all__ = ["TrackJob", "extract_tracks", "track_video"]


def track_video(path: Path, settings: CacheSettings,
                tracker: PointTracker | None = None) -> CachedTracks:
    """Decode a video's cached clips at ``settings.decode_size`` and track the dense grid.

    Args:
        path: the video.
        settings: clip layout, decode size, grid spacing, tracker.
        tracker: a ready tracker (default: built from ``settings``).

    Returns:
        :class:`CachedTracks` with ``C`` clips of ``settings.layout.frames`` frames.

    Raises:
        VideoReadError: the video cannot be read (missing, not a video, truncated...).
    """
    tracker = tracker or make_tracker(settings.tracker, **dict(settings.tracker_settings))
    with VideoReader(path) as reader:
        info = reader.info
        clips = settings.layout.indices(info.num_frames)
        all_tracks, all_visible = [], []
        xs = ys = queries = None
        frame_size = (0, 0)
        for indices in clips:
            frames = reader.read(indices, settings.decode_size)  # [T, H, W, 3] uint8
            if queries is None:
                frame_size = (int(frames.shape[1]), int(frames.shape[2]))
                xs, ys = dense_grid(*frame_size, settings.grid_spacing)
                yy, xx = np.meshgrid(ys, xs, indexing="ij")
                queries = np.stack([np.zeros(xx.size), xx.ravel(), yy.ravel()], axis=1)
                queries = queries.astype(np.float32)
            tracks, visible = track_every(tracker, frames, queries, settings.frame_step)
            all_tracks.append(tracks)
            all_visible.append(visible)
    assert xs is not None and ys is not None
    return CachedTracks(
        clip_starts=clips[:, 0].copy(), frame_indices=clips, grid_x=xs, grid_y=ys,
        grid_spacing=float(settings.grid_spacing), tracks=np.stack(all_tracks),
        visible=np.stack(all_visible), frame_size=frame_size,
        source_size=(info.height, info.display_width))


class TrackJob:
    """Extraction of one video's tracks into ``cache`` (an
    :class:`~motionmae.cache.extraction.ExtractJob`); the tracker is built by :meth:`start`,
    in the process that tracks."""

    name = "extract-tracks"

    def __init__(self, cache: TrackCache) -> None:
        self.cache = cache
        self.tracker: PointTracker | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"cache": self.cache, "tracker": None}  # each process builds its own

    def start(self) -> None:
        settings = self.cache.settings
        self.tracker = make_tracker(settings.tracker, **dict(settings.tracker_settings))

    def __call__(self, video: Path) -> Literal["done", "skipped"]:
        if self.cache.get(video) is not None:
            return "skipped"
        key = self.cache.key(video)  # the video as read: a change while tracking is a new key
        self.cache.put(video, track_video(video, self.cache.settings, self.tracker), key=key)
        return "done"


def extract_tracks(
    videos: Sequence[str | Path],
    cache: TrackCache,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    on_progress: ProgressFn | None = None,
    start_method: str = "spawn",
) -> ExtractStats:
    """Fill ``cache`` for this shard of ``videos``.

    Args:
        videos: video files (list order defines the sharding).
        cache: where to store, and every setting (tracker, decode size, clips, grid).
        workers: processes; ``1`` runs in this process.
        shard: ``(k, n)``: this call handles videos ``i`` with ``i % n == k``.
        on_progress: called after each video as ``(completed, total, video, status)``.
        start_method: multiprocessing start method of the pool.

    Returns:
        :class:`~motionmae.cache.extraction.ExtractStats` (``done``: videos tracked).
    """
    return extract(videos, TrackJob(cache), workers=workers, shard=shard,
                   on_progress=on_progress, start_method=start_method)
