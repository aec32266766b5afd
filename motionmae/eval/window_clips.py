"""Where the windows of a long video are, and their clips from one decode of the video.

A window is one clip of the checkpoint's geometry: ``frames`` frames ``stride`` source frames
apart, covering ``frames * stride`` source frames; window ``k`` starts at source frame
``k * step``. Only windows that fit inside the video are taken, so the last
``(num_frames - frames * stride) % step`` frames are not covered; a video shorter than one
window gets a single window at frame 0, padded by repeating its last frame (as evaluation
clips are). Times are in seconds, ``frame / fps``, the mapping the reader uses from timestamps
to frame indices (:mod:`motionmae.data.video_reader`); a window ends where its last frame's
display time ends (``(start + frames * stride) / fps``, at most the video's length).

Each video is decoded once, front to back, at the working short side, and every needed frame
is centre-cropped and normalised once, however many windows share it: the pixels are those of
``motionmae features`` (:class:`~motionmae.data.dataset.VideoDataset` in evaluation with one
clip and one crop), so window ``k``'s feature is the feature of the clip starting at frame
``k * step``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from motionmae.data.config import DataConfig
from motionmae.data.transforms import apply_geometry, eval_geometries, normalize, output_size
from motionmae.data.video_info import VideoInfo, VideoReadError
from motionmae.data.video_reader import VideoReader

__all__ = ["WindowPlan", "plan_windows", "window_clips"]


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

    Same pixels and frame indices as :meth:`~motionmae.data.video_reader.VideoReader.read`: index
    from the timestamp at the stream's average rate, an index no frame maps to gets the last
    frame before it, a stream that ends at most the reader's tolerance early repeats its last
    frame.
    """
    height, width = output_size(info.height, info.display_width, size)
    interpolation = "AREA" if height * width < info.height * info.width else "BILINEAR"
    reformatter = VideoReformatter()  # one per video: one per frame costs more than the work
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
