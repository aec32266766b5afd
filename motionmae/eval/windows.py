"""Features of whole videos: the encoder slid over each video, one feature per window.

For temporal action localisation (and anything else that needs features along a long video).
Where the windows are and how their clips are read: :mod:`motionmae.eval.window_clips`.
Loader workers decode different videos; their windows are batched together
(windows of several videos in one forward pass).

Output: a folder with one ``.npz`` per video (mirroring the videos' folders below their common
parent; written atomically, so an existing file is complete and a rerun skips it, unless it
was made with other settings or another checkpoint), or a single ``.npz`` for the whole list.

The steps live beside this module: :mod:`~motionmae.eval.window_clips` (where the windows are,
decoding), :mod:`~motionmae.eval.window_files` (the output files); their public names are
re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from motionmae.data.config import DataConfig
from motionmae.data.video_info import VideoInfo, VideoReadError
from motionmae.eval.window_clips import WindowPlan, plan_windows, window_clips
from motionmae.eval.window_files import (
    VideoWindows,
    is_complete,
    load_video_windows,
    output_paths,
    save_list_windows,
    save_video_windows,
    window_settings,
)

__all__ = [
    "VideoWindows",
    "WindowPlan",
    "WindowStats",
    "extract_windows",
    "load_video_windows",
    "output_paths",
    "plan_windows",
    "save_list_windows",
    "save_video_windows",
    "window_clips",
    "window_settings",
]

logger = logging.getLogger(__name__)


# -- batching across videos ---------------------------------------------------------------


class _WindowStream(IterableDataset):
    """Batches of windows of ``videos`` (``(position, path)``), each loader worker decoding
    its own share of the videos.

    Yields dicts: ``clip [b, 3, T, S, S]``, ``video [b]`` (position), ``window [b]``,
    ``count [b]`` (windows of that video), and ``meta``: a list of ``(position, info, plan)``
    for the videos whose first window is in the batch, ``failed``: ``(position, reason)``.
    A failed video's rows may already have arrived in earlier batches: drop them.
    """

    def __init__(self, videos: Sequence[tuple[int, str]], data: DataConfig, step: int,
                 batch_size: int) -> None:
        self.videos = list(videos)
        self.data = data
        self.step = step
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        mine = self.videos if worker is None else self.videos[worker.id::worker.num_workers]
        rows: list[tuple[int, int, int, torch.Tensor]] = []
        meta: list[tuple[int, VideoInfo, WindowPlan]] = []
        for position, path in mine:
            try:
                info, plan, clips = window_clips(path, self.data, self.step)
                meta.append((position, info, plan))
                count = len(plan.start_frames)
                for k, clip in enumerate(clips):
                    rows.append((position, k, count, clip))
                    if len(rows) == self.batch_size:
                        yield _batch(rows, meta)
                        rows, meta = [], []
            except VideoReadError as error:
                rows = [row for row in rows if row[0] != position]
                meta = [m for m in meta if m[0] != position]
                yield {**_batch(rows, meta), "failed": [(position, str(error))]}
                rows, meta = [], []
        if rows or meta:
            yield _batch(rows, meta)


def _batch(rows: list[tuple[int, int, int, torch.Tensor]],
           meta: list[tuple[int, VideoInfo, WindowPlan]]) -> dict[str, Any]:
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return {
        "clip": torch.stack(columns[3]) if rows else None,
        "video": torch.tensor(columns[0], dtype=torch.int64),
        "window": torch.tensor(columns[1], dtype=torch.int64),
        "count": torch.tensor(columns[2], dtype=torch.int64),
        "meta": meta,
        "failed": [],
    }


def _unchanged(item: Any) -> Any:
    return item


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # the workers only crop and normalise; the cores are the model's


# -- the whole job ------------------------------------------------------------------------


@dataclass
class WindowStats:
    """What :func:`extract_windows` did: videos computed, skipped (complete output found),
    failed (with the reason), windows computed, videos shorter than one window (``padded``:
    one window at frame 0, their last frame repeated) and seconds taken."""

    done: int = 0
    skipped_existing: int = 0
    windows: int = 0
    padded: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)


@torch.no_grad()
def extract_windows(
    encoder: nn.Module,
    videos: Sequence[str | Path],
    data: DataConfig,
    step: int,
    out: str | Path,
    *,
    batch_size: int = 8,
    workers: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    shard: tuple[int, int] = (0, 1),
    source: str = "",
    on_video: Callable[[int, int], None] | None = None,
) -> WindowStats:
    """Mean-pooled features of every window (see the module docstring) of this shard's videos.

    Args:
        encoder: maps a normalised clip ``[B, C, T, H, W]`` to tokens ``[B, L, D]``.
        videos: the whole list; shard ``(i, n)`` takes videos ``i, i + n, ...``.
        data: the clip geometry (``frames``, ``stride``, ``size``, ``mean``, ``std``).
        step: source frames between window starts.
        out: a folder (one ``.npz`` per video, see :func:`output_paths`; videos whose
            output is complete are skipped) or a file ending in ``.npz`` (every window of
            the shard's videos, :func:`save_list_windows`; always computed).
        workers: loader processes decoding videos (0: in this process).
        source: names the checkpoint in the outputs' settings (a rerun with another
            checkpoint recomputes).
        on_video: ``(finished, total)`` after each video of the shard is written or fails.
    """
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    began = time.perf_counter()
    out = Path(out)
    single = out.suffix == ".npz"
    settings = window_settings(data, step, source)
    paths = [str(v) for v in videos]
    targets = None if single else output_paths(paths, out)
    stats = WindowStats()
    span = (data.frames - 1) * data.stride + 1  # source frames a window's clip reaches
    todo = []
    for position in range(index, len(paths), count):
        if targets is not None and is_complete(targets[position], settings):
            stats.skipped_existing += 1
        else:
            todo.append((position, paths[position]))
    total = len(todo)
    if on_video is not None:
        on_video(0, total)
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    stream = _WindowStream(todo, data, step, batch_size)
    workers = min(workers, len(todo))
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_unchanged,
                        worker_init_fn=_one_thread if workers > 0 else None)
    pending: dict[int, tuple[VideoInfo, WindowPlan, dict[int, np.ndarray]]] = {}
    finished: dict[int, VideoWindows] = {}

    def finish(position: int) -> None:
        info, plan, rows = pending.pop(position)
        result = VideoWindows(paths[position], np.stack([rows[k] for k in range(len(rows))]),
                              plan.start_frames, plan.starts, plan.ends, info.fps,
                              info.num_frames)
        if targets is not None:
            save_video_windows(result, targets[position], settings)
        else:
            finished[position] = result
        stats.done += 1
        stats.windows += len(rows)
        stats.padded += info.num_frames < span
        if on_video is not None:
            on_video(stats.done + len(stats.failed), total)

    for batch in loader:
        for position, info, plan in batch["meta"]:
            pending[position] = (info, plan, {})
        if batch["clip"] is not None:
            with autocast:
                tokens = encoder(batch["clip"].to(device, non_blocking=True))
            pooled = tokens.float().mean(dim=1).cpu().numpy()
            for row, (position, k, windows) in enumerate(zip(
                    batch["video"].tolist(), batch["window"].tolist(),
                    batch["count"].tolist(), strict=True)):
                pending[position][2][k] = pooled[row]
                if len(pending[position][2]) == windows:
                    finish(position)
        for position, reason in batch["failed"]:
            pending.pop(position, None)
            logger.warning("%s", reason)
            stats.failed.append((paths[position], reason))
            if on_video is not None:
                on_video(stats.done + len(stats.failed), total)
    if single:
        save_list_windows([finished[p] for p in sorted(finished)], out, settings)
    if stats.padded:
        logger.warning("%d of %d videos are shorter than a window's span (%d frames x stride "
                       "%d = %d source frames): each got one window at frame 0, padded by "
                       "repeating its last frame", stats.padded, stats.done, data.frames,
                       data.stride, span)
    stats.seconds = time.perf_counter() - began
    return stats
