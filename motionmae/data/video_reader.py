"""Reading video files with PyAV: seek, decode only the frames a clip needs, convert straight
to size. :func:`probe_video` (what the first video stream declares) and :func:`read_frames`
(frames by index) open a :class:`VideoReader` for one call; every failure to produce frames
raises :class:`~motionmae.data.video_info.VideoReadError` naming the file and the reason
(missing, empty, not a video, no video stream, no frames, truncated or damaged).

A clip needs a handful of frames from a short span, so :class:`VideoReader` seeks (by
timestamp) to the keyframe at or before the first needed frame, decodes forward (skipping
unneeded frames that no other frame references), maps each decoded frame to its index from
its presentation timestamp, converts only the needed frames, and stops after the last one.
Needed frames are converted straight to the working resolution by libswscale (one reused
``VideoReformatter`` per thread, area filter when shrinking), so a 4K frame is never
materialised as a full-size RGB array.

Frame indices assume a constant frame rate: ``index = round((pts - start) * time_base * fps)``
with ``fps`` the stream's average rate. For variable-frame-rate files this is an approximation:
an index no frame maps to gets the frame shown at that time (the last one before it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from motionmae.data.transforms import output_size
from motionmae.data.video_info import PathLike, VideoInfo, VideoReadError

__all__ = ["VideoReader", "probe_video", "read_frames"]

logger = logging.getLogger(__name__)


class VideoReader:
    """An open video file: ``info`` and :meth:`read`. Use as a context manager.

    Args:
        path: the video file.
        threads: decoder threads; ``0`` lets FFmpeg choose (frame + slice threading,
            ``thread_type="AUTO"``), ``1`` decodes on the calling thread (the default; it
            is the fastest choice inside DataLoader workers, which already use every core,
            see ``benchmarks/loader.py``).
        tolerance: how many frames the stream may fall short of its declared count before
            reading past its real end is an error rather than a clamp (``None``: 2 frames or
            2 %, whichever is more). Containers often overstate the count by a frame or two;
            a truncated file falls short by far more.

    Raises:
        VideoReadError: the file is missing, empty, not a media file, has no video stream.
    """

    def __init__(self, path: PathLike, *, threads: int = 1, tolerance: int | None = None):
        self.path = Path(path)
        _check_file(self.path)
        try:
            self._container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
            detail = getattr(error, "strerror", None) or str(error)
            raise VideoReadError.for_file(
                self.path, f"cannot be opened as media: {detail} (not a video file, or "
                "truncated or damaged)") from error
        try:
            if not self._container.streams.video:
                kinds = sorted({s.type for s in self._container.streams})
                reason = (f"no video stream (streams: {', '.join(kinds)})" if kinds else
                          "no streams at all (empty container: zero frames)")
                raise VideoReadError.for_file(self.path, reason)
            self._stream = self._container.streams.video[0]
            self._fresh = True  # nothing demuxed yet: decoding starts at the first frame
            self._last_packet = -1  # index of the last packet the decoder accepted
            self._seekable = True
            self._threads = threads
            if threads != 1:
                self._stream.thread_type = "AUTO"
                self._stream.thread_count = threads
            self._time_base = float(self._stream.time_base or 0) or 1.0 / av.time_base
            self._start = self._stream.start_time or 0
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise
        self._tolerance = (tolerance if tolerance is not None
                           else max(2, math.ceil(0.02 * self.info.num_frames)))

    # -- metadata ------------------------------------------------------------------------

    def _probe(self) -> VideoInfo:
        stream = self._stream
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoReadError.for_file(self.path, "video stream has no frame size")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = 0.0
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / av.time_base
        num_frames = int(stream.frames or 0)
        if num_frames <= 0 and duration > 0 and fps > 0:
            num_frames = round(duration * fps)
        if num_frames <= 0:
            num_frames = self.count_frames()
        if num_frames <= 0:
            raise VideoReadError.for_file(self.path, "video stream has no frames")
        if fps <= 0:
            fps = num_frames / duration if duration > 0 else 25.0
        if duration <= 0:
            duration = num_frames / fps
        sar = stream.sample_aspect_ratio
        sample_aspect = float(sar) if sar is not None and sar.numerator > 0 else 1.0
        return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height,
                         duration=duration, display_width=max(1, round(width * sample_aspect)),
                         sample_aspect=sample_aspect)

    def count_frames(self) -> int:
        """Frames that actually decode (decodes the whole stream; slow for long videos)."""
        count = 0
        self._rewind()
        try:
            for _ in self._container.decode(self._stream):
                count += 1
        except av.FFmpegError as error:
            if count == 0:
                raise VideoReadError.for_file(self.path, f"decode error: {error}") from error
            logger.debug("%s: decode error after %d frames: %s", self.path, count, error)
        return count

    def _rewind(self) -> None:
        """Back to the first frame: nothing on a fresh container, else a seek, else reopen
        (raw streams such as ``.h264`` cannot seek)."""
        if self._fresh:
            self._fresh = False
            return
        try:
            self._container.seek(self._start, stream=self._stream, backward=True)
        except av.FFmpegError:
            self._container.close()
            self._container = av.open(str(self.path), mode="r")
            threads = (self._stream.thread_type, self._stream.thread_count)
            self._stream = self._container.streams.video[0]
            if threads[0] != self._stream.thread_type:
                self._stream.thread_type, self._stream.thread_count = threads

    # -- frames --------------------------------------------------------------------------

    def _index(self, pts: int | None, previous: int) -> int:
        if pts is None:
            return previous + 1
        return round((pts - self._start) * self._time_base * self.info.fps)

    def _frames_from(self, first: int, seek: bool,
                     skip: set[int] | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decoded ``(index, frame)`` from the keyframe at or before ``first`` (or the start).

        With ``skip`` (the wanted indices), packets of other frames are decoded with
        ``skip_frame="NONREF"``: a frame nothing else refers to (most B-frames) and nobody
        wants is not decoded at all. Single-threaded decoding only (with frame threading the
        setting would not apply to the right packet).
        """
        if seek and first > 0 and self._seekable:
            self._fresh = False
            # Aim half a frame early so rounding never lands after the wanted frame.
            target = self._start + int((first - 0.5) / self.info.fps / self._time_base)
            try:
                self._container.seek(max(target, self._start), stream=self._stream,
                                     backward=True, any_frame=False)
            except av.FFmpegError as error:  # e.g. raw .h264 streams: decode from the start
                logger.debug("%s: cannot seek (%s); decoding from the start", self.path, error)
                self._seekable = False
                self._rewind()
        else:
            self._rewind()
        codec = self._stream.codec_context
        skipping = skip is not None and self._threads == 1
        index = -1
        self._last_packet = -1
        try:
            for packet in self._container.demux(self._stream):
                packet_index = None if packet.pts is None else self._index(packet.pts, -1)
                if skipping and packet_index is not None:
                    wanted = packet_index in skip  # type: ignore[operator]
                    codec.skip_frame = "DEFAULT" if wanted else "NONREF"
                frames = codec.decode(packet)
                if packet_index is not None:  # sent without error: the stream reaches it
                    self._last_packet = max(self._last_packet, packet_index)
                for frame in frames:
                    index = self._index(frame.pts, index)
                    yield index, frame
        finally:
            if skipping:
                codec.skip_frame = "DEFAULT"

    def read(self, indices: Sequence[int] | np.ndarray, size: int | None = None, *,
             seek: bool = True, skip_unneeded: bool = True) -> np.ndarray:
        """Frames ``indices`` as ``[len(indices), H', W', 3]`` uint8 RGB.

        Args:
            indices: frame indices (any order, repeats allowed). Indices past the last
                frame are clamped to it (the last frame repeats); negative ones raise. When
                the stream ends (or breaks) at most ``tolerance`` frames before its declared
                length, the missing tail repeats the last decoded frame.
            size: short side of the output in pixels, aspect kept (display aspect when the
                stream has a non-square sample aspect ratio); ``None`` keeps the coded size.
            seek: seek to the keyframe before the first needed frame (``False`` decodes
                from the start; same pixels, slower; kept for benchmarks and tests).
            skip_unneeded: do not decode unneeded frames that no other frame references
                (non-reference B-frames; same pixels, faster: docs/benchmarks.md, "Data
                pipeline"; single-threaded decoding only).

        Raises:
            VideoReadError: the stream ends more than ``tolerance`` frames before its
                declared length (truncated or damaged) and a frame from that gap was asked
                for, or decoding fails before every needed frame is out.
        """
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            raise ValueError("indices must not be empty")
        if (wanted < 0).any():
            raise ValueError(f"frame indices must be >= 0, got {wanted.min()}")
        wanted = np.minimum(wanted, self.info.num_frames - 1)
        needed = [int(i) for i in np.unique(wanted)]
        height, width = self._output_size(size)
        got = self._decode(needed, height, width, seek and needed[0] > 0, skip_unneeded)
        if got is None:  # the seek landed after the first needed frame: bad index
            logger.debug("%s: seek missed frame %d, decoding from the start",
                         self.path, needed[0])
            got = self._decode(needed, height, width, False, skip_unneeded)
        assert got is not None
        return np.stack([got[int(i)] for i in wanted])

    def _output_size(self, size: int | None) -> tuple[int, int]:
        if size is None:
            return self.info.height, self.info.width
        return output_size(self.info.height, self.info.display_width, size)

    def _decode(self, needed: list[int], height: int, width: int, seek: bool,
                skip_unneeded: bool) -> dict[int, np.ndarray] | None:
        """Decode forward from the (key)frame before ``needed[0]``, converting needed frames.

        A needed index that no frame maps to exactly (variable frame rate) gets the frame
        shown at that time, the last one before it. Returns ``None`` when ``seek`` landed
        after ``needed[0]``.
        """
        # Area averaging when shrinking (antialiased, as fast as the default bilinear here),
        # bilinear when enlarging.
        shrinking = height * width < self.info.height * self.info.width
        interpolation = "AREA" if shrinking else "BILINEAR"
        cache: list[Any] = [None, None]  # [frame, its array]: a frame is converted once

        def convert(frame: av.VideoFrame) -> np.ndarray:
            if cache[0] is not frame:
                cache[0] = frame
                # A reused reformatter keeps its libswscale context: building one per frame
                # (what ``frame.to_ndarray(...)`` does) costs more than the conversion.
                cache[1] = _reformatter().reformat(
                    frame, width=width, height=height, format="rgb24",
                    interpolation=interpolation, threads=1).to_ndarray()
            return cache[1]

        got: dict[int, np.ndarray] = {}
        pending = 0  # position in ``needed`` of the next frame to produce
        previous: tuple[int, av.VideoFrame] | None = None
        failure: av.FFmpegError | None = None
        try:
            skip = set(needed) if skip_unneeded else None
            for index, frame in self._frames_from(needed[0], seek, skip):
                while pending < len(needed) and needed[pending] < index:
                    if previous is None:
                        if seek:
                            return None
                        previous = (index, frame)  # stream starts late: use its first frame
                    got[needed[pending]] = convert(previous[1])
                    pending += 1
                if pending < len(needed) and needed[pending] == index:
                    got[index] = convert(frame)
                    pending += 1
                previous = (index, frame)
                if pending == len(needed):
                    return got
        except av.FFmpegError as error:  # a cut-off last packet ends like the stream does
            failure = error
        # The stream ended (or broke) before the last needed frame.
        detail = f" ({failure})" if failure is not None else ""
        if previous is None:
            if seek and failure is None:
                return None
            raise VideoReadError.for_file(
                self.path, f"no frames decoded (stream declares {self.info.num_frames}): "
                f"truncated or damaged{detail}")
        last = max(previous[0], self._last_packet)  # skipped frames count as present
        if self.info.num_frames - 1 - last > self._tolerance:
            cause = "decode error" if failure is not None else "stream ended"
            raise VideoReadError.for_file(
                self.path, f"truncated or damaged: {cause} after frame {last} but the stream "
                f"declares {self.info.num_frames} frames (frame {needed[pending]} was needed)"
                f"{detail}")
        logger.debug("%s: stream ends at frame %d (declares %d)%s; repeating frame %d",
                     self.path, last, self.info.num_frames, detail, previous[0])
        for i in needed[pending:]:
            got[i] = convert(previous[1])
        return got

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """This thread's reusable scaler/colour converter (libswscale context cache).

    Single-threaded (``threads=1`` at each call), and dropped in forked children (see
    ``_forget_reformatters``): a scaler inherited through ``fork`` from a parent that ran it
    must never be used, as its worker threads did not survive the fork (DataLoader workers
    hang).
    """
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter


def _forget_reformatters() -> None:
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_reformatters)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError.for_file(path, "file not found")
    if not path.is_file():
        raise VideoReadError.for_file(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError.for_file(path, "empty file (0 bytes)")
