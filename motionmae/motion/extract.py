"""Fill the track cache: ``motionmae extract-tracks`` as a library call.

For each video of this shard (``i % n == k`` over the list order: deterministic, so ``n``
machines or ranks with ``shard=(k, n)`` partition the list), :func:`extract_tracks` skips it
when a valid entry exists (resumable: rerun after an interruption and only the missing or
corrupt entries are computed), else decodes its cached clips
(:func:`~motionmae.motion.cache.cached_clip_indices`) at the cache's ``decode_size``,
tracks the dense query grid (:func:`~motionmae.motion.cache.dense_grid`) from each clip's
first frame (through every ``frame_step``-th frame: :mod:`~motionmae.motion.frame_step`) and
stores the result. A video that cannot be read or tracked is reported in
:attr:`ExtractStats.failed` with the reason and does not stop the run.

Every setting comes from the cache (:class:`~motionmae.motion.cache.CacheSettings`): the
settings are part of the cache key, so they have one source of truth.

Parallelism: a process pool of ``workers`` (``spawn``; each worker single-threaded OpenCV and
torch, its own tracker), one video per task; workers write their shards themselves. Extracting
the same videos from several processes or machines at once is safe (atomic writes), only
wasteful.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from motionmae.data.video_info import VideoReadError
from motionmae.data.video_reader import VideoReader
from motionmae.motion.cache import (
    CachedTracks,
    CacheSettings,
    TrackCache,
    cached_clip_indices,
    dense_grid,
)
from motionmae.motion.frame_step import track_every
from motionmae.motion.protocol import PointTracker
from motionmae.motion.registry import make_tracker

__all__ = ["ExtractStats", "extract_tracks", "shard_videos", "track_video"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, Path, str], None]
"""``on_progress(completed, total, video, status)``; status ``done``/``skipped``/``failed``."""


@dataclass
class ExtractStats:
    """What one :func:`extract_tracks` call did.

    Attributes:
        done: videos tracked and stored.
        skipped_existing: videos that already had a valid entry.
        failed: ``(video, reason)`` of the videos that could not be read or tracked, in list
            order.
        seconds: wall-clock time of the call.
    """

    done: int = 0
    skipped_existing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def videos_per_second(self) -> float:
        """Tracked videos per second of wall-clock time (0 when nothing was tracked)."""
        return self.done / self.seconds if self.seconds > 0 else 0.0


def shard_videos(videos: Sequence[Path], shard: tuple[int, int]) -> list[Path]:
    """Videos ``i`` of the list with ``i % n == k`` for ``shard = (k, n)``."""
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
    return [Path(v) for i, v in enumerate(videos) if i % count == index]


def track_video(path: Path, settings: CacheSettings,
                tracker: PointTracker | None = None) -> CachedTracks:
    """Decode a video's cached clips at ``settings.decode_size`` and track the dense grid.

    Args:
        path: the video.
        settings: clip layout, decode size, grid spacing, tracker.
        tracker: a ready tracker (default: built from ``settings``).

    Returns:
        :class:`CachedTracks` with ``C`` clips of ``settings.frames`` frames.

    Raises:
        VideoReadError: the video cannot be read (missing, not a video, truncated...).
    """
    tracker = tracker or make_tracker(settings.tracker, **dict(settings.tracker_settings))
    with VideoReader(path) as reader:
        info = reader.info
        clips = cached_clip_indices(info.num_frames, settings.frames, settings.stride,
                                    settings.cache_clips)
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


def _process(path: Path, cache: TrackCache, tracker: PointTracker) -> tuple[str, str]:
    """One video: ``("skipped" | "done" | "failed", reason)``."""
    try:
        if cache.get(path) is not None:
            return "skipped", ""
        key = cache.key(path)  # the video as read: a change while tracking is a new key
        cache.put(path, track_video(path, cache.settings, tracker), key=key)
        return "done", ""
    except VideoReadError as error:
        return "failed", error.reason or str(error)
    except Exception as error:  # one bad video must not stop a multi-day extraction
        logger.debug("extract-tracks: %s failed", path, exc_info=True)
        return "failed", f"{type(error).__name__}: {error}"


# -- worker processes ------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(cache: TrackCache) -> None:
    cv2.setNumThreads(1)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)
    _WORKER["cache"] = cache
    _WORKER["tracker"] = make_tracker(cache.settings.tracker,
                                      **dict(cache.settings.tracker_settings))


def _work(path: Path) -> tuple[str, str]:
    return _process(path, _WORKER["cache"], _WORKER["tracker"])


def _run_inline(paths: list[Path], cache: TrackCache) -> Iterator[tuple[int, str, str]]:
    tracker = make_tracker(cache.settings.tracker, **dict(cache.settings.tracker_settings))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for i, path in enumerate(paths):
            yield (i, *_process(path, cache, tracker))
    finally:
        cv2.setNumThreads(threads)


def _run_pool(paths: list[Path], cache: TrackCache, workers: int,
              start_method: str) -> Iterator[tuple[int, str, str]]:
    context = multiprocessing.get_context(start_method)
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                     initargs=(cache,)) as pool:
        pending = {pool.submit(_work, path): i for i, path in enumerate(paths)}
        try:
            for future in futures.as_completed(pending):
                yield (pending[future], *future.result())
        except BrokenProcessPool as error:
            # A worker died (killed, out of memory, a crash in native code): report the
            # videos not finished; a rerun resumes from the entries already written.
            logger.error("extract-tracks: a worker process died (%s)", error)
            for future, i in pending.items():
                if not future.done() or future.exception() is not None:
                    yield i, "failed", f"worker process died ({error})"
            return


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
        :class:`ExtractStats`.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    paths = shard_videos([Path(v) for v in videos], shard)
    stats = ExtractStats()
    started = time.perf_counter()
    failed: dict[int, tuple[Path, str]] = {}
    results = (_run_inline(paths, cache) if workers == 1 or len(paths) <= 1
               else _run_pool(paths, cache, min(workers, len(paths)), start_method))
    for completed, (i, status, reason) in enumerate(results, start=1):
        if status == "done":
            stats.done += 1
        elif status == "skipped":
            stats.skipped_existing += 1
        else:
            failed[i] = (paths[i], reason)
            logger.warning("extract-tracks: %s failed: %s", paths[i], reason)
        if on_progress is not None:
            on_progress(completed, len(paths), paths[i], status)
    stats.failed = [failed[i] for i in sorted(failed)]
    stats.seconds = time.perf_counter() - started
    logger.info("extract-tracks: shard %d/%d: %d tracked, %d already cached, %d failed in "
                "%.1f s (%.2f videos/s)", shard[0], shard[1], stats.done,
                stats.skipped_existing, len(stats.failed), stats.seconds,
                stats.videos_per_second)
    return stats
