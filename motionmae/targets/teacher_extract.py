"""Fill the teacher feature cache: ``motionmae extract-teacher`` as a library call.

:func:`extract_teacher` runs the cache's extraction driver (:func:`motionmae.cache.extract`:
sharded as ``extract-tracks``, resumable, with progress) with a :class:`TeacherJob`: for each
video whose cached clips (:class:`~motionmae.cache.layout.ClipLayout`) are not all cached, it
decodes their teacher frames (frame ``frame`` of each tubelet) at the cache's
``decode_size``, runs the teacher on whole frames (short side at the teacher's input side,
:func:`~motionmae.targets.teacher_cache.frame_input_size`) in batches of ``batch_size`` frames
and stores one shard per clip. One process holds the teacher (on ``device``); run several
shards for several devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from motionmae.cache.extraction import ExtractStats, ProgressFn, extract
from motionmae.cache.layout import ClipLayout
from motionmae.data.video_reader import VideoReader
from motionmae.targets.teacher import run_teacher, use_bf16
from motionmae.targets.teacher_cache import CachedFeatures, TeacherFeatureCache, frame_input_size
from motionmae.targets.teacher_models import FrozenTeacher

__all__ = ["TeacherJob", "extract_teacher", "teacher_clip_features"]


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


class TeacherJob:
    """Extraction of one video's teacher features into ``cache`` (an
    :class:`~motionmae.cache.extraction.ExtractJob`, run in this process: it holds the
    teacher on ``device``)."""

    name = "extract-teacher"

    def __init__(self, cache: TeacherFeatureCache, layout: ClipLayout, teacher: FrozenTeacher,
                 device: torch.device, batch_size: int) -> None:
        self.cache = cache
        self.layout = layout
        self.teacher = teacher
        self.device = device
        self.batch_size = batch_size

    def start(self) -> None:
        self.teacher.to(self.device)

    def __call__(self, video: Path) -> Literal["done", "skipped"]:
        with VideoReader(video) as reader:
            clips = self.layout.indices(reader.info.num_frames)
            if all(self.cache.get(video, clip) is not None for clip in clips):
                return "skipped"
            keys = [self.cache.key(video, clip) for clip in clips]  # the video as read
            entries = teacher_clip_features(reader, clips, self.cache, self.teacher,
                                            self.device, self.batch_size)
        for key, entry in zip(keys, entries, strict=True):
            self.cache.put(video, entry, key=key)
        return "done"


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
        :class:`~motionmae.cache.extraction.ExtractStats` (``done``: videos computed).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if teacher.spec.fingerprint != cache.settings.teacher:
        raise ValueError(f"teacher {teacher.spec.path} is not the one the cache settings name "
                         f"(fingerprint {cache.settings.teacher[:12]}...)")
    job = TeacherJob(cache, layout, teacher, torch.device(device), batch_size)
    return extract(videos, job, shard=shard, on_progress=on_progress)
