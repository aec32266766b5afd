"""Fill the teacher feature cache: ``motionmae extract-teacher`` as a library call.

For each video of this shard (``i % n == k``, as ``extract-tracks``), :func:`extract_teacher`
skips it when every cached clip has a valid entry (resumable), else decodes the teacher frames
of its cached clips (:func:`~motionmae.motion.cache.cached_clip_indices`; frame ``frame`` of
each tubelet) at the cache's ``decode_size``, runs the teacher on whole frames (short side at
the teacher's input side, :func:`~motionmae.targets.teacher_cache.frame_input_size`) in
batches of ``batch_size`` frames and stores one shard per clip. A video that cannot be read
is reported in :attr:`~motionmae.motion.extract.ExtractStats.failed` and does not stop the
run. One process holds the teacher (on ``device``); run several shards for several devices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motionmae.data.video_info import VideoReadError
from motionmae.data.video_reader import VideoReader
from motionmae.motion.cache import cached_clip_indices
from motionmae.motion.extract import ExtractStats, ProgressFn, shard_videos
from motionmae.targets.teacher import run_teacher, use_bf16
from motionmae.targets.teacher_cache import CachedFeatures, TeacherFeatureCache, frame_input_size
from motionmae.targets.teacher_models import FrozenTeacher

__all__ = ["ClipLayout", "extract_teacher", "teacher_clip_features"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipLayout:
    """Which clips of a video are cached: ``cache_clips`` evenly spaced clips of ``frames``
    frames ``stride`` source frames apart (the track cache's layout; a run's ``data.frames``,
    ``data.stride`` and ``tracking.cache_clips``: the clips training draws when
    ``tracking.cache`` is set)."""

    frames: int
    stride: int
    cache_clips: int

    def clips(self, num_frames: int) -> np.ndarray:
        """``[C, frames]`` source frame indices of the cached clips."""
        return cached_clip_indices(num_frames, self.frames, self.stride, self.cache_clips)


def teacher_clip_features(reader: VideoReader, clips: np.ndarray, cache: TeacherFeatureCache,
                          teacher: FrozenTeacher, device: torch.device,
                          batch_size: int) -> list[CachedFeatures]:
    """Features of the whole decoded teacher frames of ``clips`` (``[C, T]`` source indices).

    Each needed frame is decoded and run once (clips may share frames).

    Returns:
        One :class:`CachedFeatures` per clip, in order.
    """
    settings = cache.settings
    teacher_frames = clips[:, settings.frame::settings.tubelet]  # [C, t]
    needed = np.unique(teacher_frames)
    decoded = reader.read(needed, settings.decode_size)  # [N, H, W, 3] uint8
    height, width = decoded.shape[1:3]
    size = frame_input_size(height, width, settings.input_size, teacher.spec.patch_size)
    bf16 = use_bf16(settings.precision, device)
    chunks = []
    for start in range(0, len(needed), batch_size):
        frames = torch.from_numpy(decoded[start:start + batch_size]).to(device)
        pixels = frames.permute(0, 3, 1, 2).float() / 255.0
        chunks.append(run_teacher(teacher, pixels, size, bf16).half().cpu())
    features = torch.cat(chunks).numpy()  # [N, g_h, g_w, D]
    info = reader.info
    return [CachedFeatures(frame_indices=clip.astype(np.int64),
                           features=features[np.searchsorted(needed, rows)],
                           frame_size=(int(height), int(width)),
                           source_size=(info.height, info.display_width))
            for clip, rows in zip(clips, teacher_frames, strict=True)]


def _process(path: Path, cache: TeacherFeatureCache, layout: ClipLayout, teacher: FrozenTeacher,
             device: torch.device, batch_size: int) -> tuple[str, str]:
    """One video: ``("skipped" | "done" | "failed", reason)``."""
    try:
        with VideoReader(path) as reader:
            clips = layout.clips(reader.info.num_frames)
            if all(cache.get(path, clip) is not None for clip in clips):
                return "skipped", ""
            keys = [cache.key(path, clip) for clip in clips]  # the video as read
            entries = teacher_clip_features(reader, clips, cache, teacher, device, batch_size)
        for key, entry in zip(keys, entries, strict=True):
            cache.put(path, entry, key=key)
        return "done", ""
    except VideoReadError as error:
        return "failed", error.reason or str(error)
    except (OSError, ValueError, RuntimeError) as error:  # one bad video must not stop the run
        logger.debug("extract-teacher: %s failed", path, exc_info=True)
        return "failed", f"{type(error).__name__}: {error}"


def extract_teacher(
    videos: Sequence[str | Path],
    cache: TeacherFeatureCache,
    teacher: FrozenTeacher,
    layout: ClipLayout,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    shard: tuple[int, int] = (0, 1),
    on_progress: ProgressFn | None = None,
) -> ExtractStats:
    """Fill ``cache`` with ``teacher``'s features of this shard of ``videos``.

    Args:
        videos: video files (list order defines the sharding).
        cache: where to store, and the settings (teacher identity, input side, tubelet
            frame, precision, decode size).
        teacher: the loaded teacher (moved to ``device``); must be the one the cache's
            settings name.
        layout: which clips of each video.
        device: where the teacher runs.
        batch_size: frames per teacher forward.
        shard: ``(k, n)``: this call handles videos ``i`` with ``i % n == k``.
        on_progress: called after each video as ``(completed, total, video, status)``.

    Returns:
        :class:`~motionmae.motion.extract.ExtractStats` (``done``: videos computed).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if teacher.spec.fingerprint != cache.settings.teacher:
        raise ValueError(f"teacher {teacher.spec.path} is not the one the cache settings name "
                         f"(fingerprint {cache.settings.teacher[:12]}...)")
    device = torch.device(device)
    teacher.to(device)
    paths = shard_videos([Path(v) for v in videos], shard)
    stats = ExtractStats()
    started = time.perf_counter()
    for completed, path in enumerate(paths, start=1):
        status, reason = _process(path, cache, layout, teacher, device, batch_size)
        if status == "done":
            stats.done += 1
        elif status == "skipped":
            stats.skipped_existing += 1
        else:
            stats.failed.append((path, reason))
            logger.warning("extract-teacher: %s failed: %s", path, reason)
        if on_progress is not None:
            on_progress(completed, len(paths), path, status)
    stats.seconds = time.perf_counter() - started
    logger.info("extract-teacher: shard %d/%d: %d computed, %d already cached, %d failed in "
                "%.1f s", shard[0], shard[1], stats.done, stats.skipped_existing,
                len(stats.failed), stats.seconds)
    return stats
