"""Features of whole videos: the encoder slid over each video, one feature per window.

For temporal action localisation (and anything else that needs features along a long video).
A window is one clip of the checkpoint's geometry: ``frames`` frames ``stride`` source frames
apart, covering ``frames * stride`` source frames; window ``k`` starts at source frame
``k * step``. Only windows that fit inside the video are taken, so the last
``(num_frames - frames * stride) % step`` frames are not covered; a video shorter than one
window gets a single window at frame 0, padded by repeating its last frame (as evaluation
clips are). Times are in seconds, ``frame / fps``, the mapping the reader uses from timestamps
to frame indices (:mod:`motionmae.data.video`); a window ends where its last frame's display
time ends (``(start + frames * stride) / fps``, at most the video's length).

Each video is decoded once, front to back, at the working short side, and every needed frame
is centre-cropped and normalised once, however many windows share it: the pixels are those of
``motionmae features`` (:class:`~motionmae.data.dataset.VideoDataset` in evaluation with one
clip and one crop), so window ``k``'s feature is the feature of the clip starting at frame
``k * step``. Loader workers decode different videos; their windows are batched together
(windows of several videos in one forward pass).

Output: a folder with one ``.npz`` per video (mirroring the videos' folders below their common
parent; written atomically, so an existing file is complete and a rerun skips it, unless it
was made with other settings or another checkpoint), or a single ``.npz`` for the whole list.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from motionmae.config import DataConfig
from motionmae.data.transforms import apply_geometry, eval_geometries, normalize
from motionmae.data.video import VideoInfo, VideoReader, VideoReadError, output_size
from motionmae.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


# -- where the windows are ----------------------------------------------------------------


@dataclass(frozen=True)
class WindowPlan:
    """The windows of one video.

    ``start_frames [W]`` int64 first source frame of each window; ``starts``, ``ends`` ``[W]``
    float64 seconds; ``indices [W, frames]`` int64 source frame of every clip frame (clamped
    to the last frame for a video shorter than a window).
    """

    start_frames: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    indices: np.ndarray


def plan_windows(num_frames: int, fps: float, frames: int, stride: int,
                 step: int) -> WindowPlan:
    """Windows of ``frames`` frames ``stride`` apart, starting every ``step`` source frames,
    in a video of ``num_frames`` frames at ``fps`` (see the module docstring)."""
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0, got {num_frames} and {fps}")
    if min(frames, stride, step) < 1:
        raise ValueError(f"frames, stride and step must be >= 1, got {frames}, {stride}, "
                         f"{step}")
    length = frames * stride
    last = max(num_frames - length, 0)
    start_frames = np.arange(0, last + 1, step, dtype=np.int64)
    indices = start_frames[:, None] + stride * np.arange(frames, dtype=np.int64)
    return WindowPlan(
        start_frames=start_frames,
        starts=start_frames / fps,
        ends=np.minimum(start_frames + length, num_frames) / fps,
        indices=np.minimum(indices, num_frames - 1),
    )


# -- decoding ---------------------------------------------------------------------------


def _decode_needed(path: Path, info: VideoInfo, needed: np.ndarray, size: int,
                   threads: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame [H, W, 3] uint8)`` for each of ``needed`` (sorted, unique), in order,
    from one front-to-back decode at short side ``size``.

    Same pixels and frame indices as :meth:`~motionmae.data.video.VideoReader.read`: index
    from the timestamp at the stream's average rate, an index no frame maps to gets the last
    frame before it, a stream that ends at most the reader's tolerance early repeats its last
    frame.
    """
    height, width = output_size(info.height, info.display_width, size)
    interpolation = "AREA" if height * width < info.height * info.width else "BILINEAR"
    reformatter = VideoReformatter()  # one per video: building one per frame costs 1-6 ms
    tolerance = max(2, math.ceil(0.02 * info.num_frames))
    pending = 0
    previous: tuple[int, Any] | None = None
    failure: av.FFmpegError | None = None

    def convert(frame: Any) -> np.ndarray:
        return reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                    interpolation=interpolation, threads=1).to_ndarray()

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise VideoReadError.for_file(path, f"cannot be opened as media: {error}") from error
    with container:
        stream = container.streams.video[0]
        if threads != 1:
            stream.thread_type, stream.thread_count = "AUTO", threads
        time_base = float(stream.time_base or 0) or 1.0 / av.time_base
        origin = stream.start_time or 0
        index = -1
        try:
            for frame in container.decode(stream):
                index = (index + 1 if frame.pts is None
                         else round((frame.pts - origin) * time_base * info.fps))
                converted = None
                while pending < len(needed) and needed[pending] <= index:
                    exact = needed[pending] == index
                    if not exact and previous is None:
                        previous = (index, frame)  # the stream starts late: its first frame
                    source = frame if exact else previous[1]  # type: ignore[index]
                    if converted is None or converted[0] is not source:
                        converted = (source, convert(source))
                    yield int(needed[pending]), converted[1]
                    pending += 1
                previous = (index, frame)
                if pending == len(needed):
                    return
        except av.FFmpegError as error:  # a cut-off last packet ends like the stream does
            failure = error
    detail = f" ({failure})" if failure is not None else ""
    if previous is None:
        raise VideoReadError.for_file(path, f"no frames decoded (stream declares "
                                      f"{info.num_frames}): truncated or damaged{detail}")
    if info.num_frames - 1 - previous[0] > tolerance:
        raise VideoReadError.for_file(
            path, f"truncated or damaged: stream ended after frame {previous[0]} but it "
            f"declares {info.num_frames} frames (frame {needed[pending]} was needed){detail}")
    last = convert(previous[1])
    for i in needed[pending:]:
        yield int(i), last


def window_clips(path: str | Path, data: DataConfig, step: int,
                 threads: int = 1) -> tuple[VideoInfo, WindowPlan, Iterator[torch.Tensor]]:
    """The video's info, its windows and an iterator over their clips ``[3, T, S, S]`` float
    (normalised, centre crop at ``data.size``), in window order, decoding the video once.

    Only the frames of the windows not yet emitted are kept in memory.

    Raises:
        VideoReadError: the video cannot be read (when probing, or while iterating).
    """
    path = Path(path)
    with VideoReader(path) as reader:
        info = reader.info
    plan = plan_windows(info.num_frames, info.fps, data.frames, data.stride, step)

    def clips() -> Iterator[torch.Tensor]:
        needed = np.unique(plan.indices)
        normalised: dict[int, torch.Tensor] = {}  # frame index -> [3, 1, S, S]
        geometry = None
        window = 0
        for index, frame in _decode_needed(path, info, needed, data.size, threads):
            if geometry is None:
                geometry = eval_geometries(frame.shape[0], frame.shape[1], data.size, 1)[0]
            crop = apply_geometry(frame[None], geometry)
            normalised[index] = normalize(crop, data.mean, data.std)
            while window < len(plan.indices) and plan.indices[window, -1] <= index:
                yield torch.cat([normalised[int(i)] for i in plan.indices[window]], dim=1)
                window += 1
                if window < len(plan.indices):  # frames before the next window: done
                    first = int(plan.indices[window, 0])
                    for old in [i for i in normalised if i < first]:
                        del normalised[old]

    return info, plan, clips()


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


# -- results and files ----------------------------------------------------------------------


@dataclass
class VideoWindows:
    """One video's window features: ``features [W, D]`` float32, ``start_frames [W]`` int64,
    ``starts``/``ends`` ``[W]`` float64 seconds, with the video's ``fps`` and ``num_frames``."""

    path: str
    features: np.ndarray
    start_frames: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    fps: float
    num_frames: int


@dataclass
class WindowStats:
    """What :func:`extract_windows` did: videos computed, skipped (complete output found),
    failed (with the reason), windows computed and seconds taken."""

    done: int = 0
    skipped_existing: int = 0
    windows: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)


def window_settings(data: DataConfig, step: int, source: str = "") -> dict[str, Any]:
    """What a window feature depends on; stored in every output and compared on resume.
    ``source`` names the checkpoint."""
    return {"version": FORMAT_VERSION, "frames": data.frames, "stride": data.stride,
            "size": data.size, "step": step, "mean": list(data.mean), "std": list(data.std),
            "source": source}


def output_paths(videos: Sequence[str | Path], out: str | Path) -> list[Path]:
    """Each video's ``.npz`` in folder ``out``: its path below the videos' common parent,
    suffix replaced (``root/a/x.mp4`` -> ``out/a/x.npz``).

    Raises:
        ValueError: two videos would share an output (same name, different suffixes).
    """
    absolute = [Path(os.path.abspath(v)) for v in videos]
    if not absolute:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    paths = [Path(out) / p.relative_to(root).with_suffix(".npz") for p in absolute]
    seen: dict[Path, Path] = {}
    for video, target in zip(absolute, paths, strict=True):
        if target in seen and seen[target] != video:
            raise ValueError(f"{seen[target]} and {video} would both be written to {target}; "
                             "rename one")
        seen[target] = video
    return paths


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_video_windows(windows: VideoWindows, path: str | Path,
                       settings: dict[str, Any]) -> None:
    """Write one video's windows atomically (a reader never sees a partial file)."""
    atomic_write_bytes(Path(path), _npz_bytes({
        "features": windows.features.astype(np.float32),
        "start_frames": windows.start_frames, "starts": windows.starts, "ends": windows.ends,
        "path": np.asarray(windows.path), "fps": np.asarray(windows.fps),
        "num_frames": np.asarray(windows.num_frames),
        "settings": np.asarray(json.dumps(settings, sort_keys=True)),
    }))


def load_video_windows(path: str | Path) -> tuple[VideoWindows, dict[str, Any]]:
    """Read a file written by :func:`save_video_windows` (no pickle): windows and settings."""
    with np.load(path, allow_pickle=False) as data:
        windows = VideoWindows(
            path=str(data["path"]), features=data["features"],
            start_frames=data["start_frames"], starts=data["starts"], ends=data["ends"],
            fps=float(data["fps"]), num_frames=int(data["num_frames"]))
        return windows, json.loads(str(data["settings"]))


def _complete(path: Path, settings: dict[str, Any]) -> bool:
    """An existing output made with these settings (atomic writes: present means whole)."""
    if not path.is_file():
        return False
    try:
        windows, saved = load_video_windows(path)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("%s: unreadable (%s); computing it again", path, error)
        return False
    if saved != settings:
        logger.warning("%s was made with other settings; computing it again", path)
        return False
    return len(windows.features) == len(windows.starts) > 0


def save_list_windows(videos: Sequence[VideoWindows], path: str | Path,
                      settings: dict[str, Any]) -> None:
    """One ``.npz`` for a list: ``features [N, D]`` (every window of every video),
    ``video [N]`` (index into ``paths``), ``start_frames``, ``starts``, ``ends`` ``[N]``;
    ``paths``, ``fps``, ``num_frames`` per video; ``settings`` (JSON)."""
    dim = videos[0].features.shape[1] if videos else 0

    def cat(name: str, dtype: Any) -> np.ndarray:
        parts = [getattr(v, name) for v in videos]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    atomic_write_bytes(Path(path), _npz_bytes({
        "features": (np.concatenate([v.features for v in videos]).astype(np.float32)
                     if videos else np.zeros((0, dim), np.float32)),
        "video": np.repeat(np.arange(len(videos)), [len(v.starts) for v in videos]),
        "start_frames": cat("start_frames", np.int64), "starts": cat("starts", np.float64),
        "ends": cat("ends", np.float64),
        "paths": np.asarray([v.path for v in videos], dtype=str),
        "fps": np.asarray([v.fps for v in videos], dtype=np.float64),
        "num_frames": np.asarray([v.num_frames for v in videos], dtype=np.int64),
        "settings": np.asarray(json.dumps(settings, sort_keys=True)),
    }))


# -- the whole job ------------------------------------------------------------------------


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
    todo = []
    for position in range(index, len(paths), count):
        if targets is not None and _complete(targets[position], settings):
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
    stats.seconds = time.perf_counter() - began
    return stats
