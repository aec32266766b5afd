"""Video files with PyAV: probing, reading only the frames a clip needs, writing.

The package's entry point for video files: :func:`probe_video` (what the first video stream
declares, :class:`VideoInfo`) and :func:`read_frames` (frames by index, at a short side, through
:class:`VideoReader`, which seeks and decodes only the frames a clip needs). The parts live
beside this module and are re-exported here: :mod:`~motionmae.data.video_info` (stream facts,
:func:`output_size`, the error), :mod:`~motionmae.data.video_reader` (:class:`VideoReader`)
and :mod:`~motionmae.data.video_writer` (:func:`write_video`).

Every failure to produce frames raises :class:`VideoReadError`, a ``RuntimeError`` whose
message names the file and the reason (missing, empty, not a video, no video stream, no
frames, truncated or damaged).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from motionmae.data.video_info import PathLike, VideoInfo, VideoReadError, output_size
from motionmae.data.video_reader import VideoReader
from motionmae.data.video_writer import write_video

__all__ = [
    "VideoInfo",
    "VideoReadError",
    "VideoReader",
    "output_size",
    "probe_video",
    "read_frames",
    "write_video",
]


def probe_video(path: PathLike, *, exact: bool = False) -> VideoInfo:
    """Frame count, rate and size of the first video stream of ``path``.

    ``num_frames`` comes from the stream header; when the header has no count it is
    ``round(duration * fps)``; when there is no duration either, the frames are counted by
    decoding. Headers can lie (a truncated file keeps its header, some muxers overstate by
    a frame): ``exact=True`` always counts by decoding (slow: decodes the whole stream), and
    :meth:`VideoReader.read` detects the lie when it runs out of frames.

    Raises:
        VideoReadError: missing, empty, non-media or video-less file, or no frames.
    """
    with VideoReader(path) as reader:
        info = reader.info
        if exact:
            count = reader.count_frames()
            if count <= 0:
                raise VideoReadError.for_file(path, "video stream has no frames")
            info = dataclasses.replace(info, num_frames=count)
        return info


def read_frames(path: PathLike, indices: Sequence[int] | np.ndarray,
                size: int | None = None, *, seek: bool = True, skip_unneeded: bool = True,
                threads: int = 1) -> np.ndarray:
    """Frames ``indices`` of ``path`` as ``[len(indices), H', W', 3]`` uint8 RGB.

    ``size`` is the output short side in pixels (aspect kept); ``None`` keeps the coded
    size. Indices past the end are clamped (the last frame repeats). See
    :meth:`VideoReader.read`.

    Raises:
        VideoReadError: the file cannot be read; the message names it and the reason.
    """
    with VideoReader(path, threads=threads) as reader:
        return reader.read(indices, size, seek=seek, skip_unneeded=skip_unneeded)
