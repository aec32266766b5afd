"""Re-encoding one video: the encoder step of ``motionmae prepare``.

:func:`transcode` decodes the first video stream of a file and writes it again as H.264
``yuv420p`` in an ``.mp4``: the short side brought down to ``short_side`` (:func:`prepared_size`:
aspect kept, even sides, never enlarged, square pixels), a keyframe every
``keyframe_seconds``, every frame kept or resampled to ``fps``, audio dropped, one decoder and
one encoder thread (parallelism comes from the caller's worker processes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter

from motionmae.data.config import PrepareConfig
from motionmae.data.video_info import VideoReadError
from motionmae.data.video_reader import probe_video

__all__ = ["Encoded", "prepared_size", "transcode"]


@dataclass(frozen=True)
class Encoded:
    """What :func:`transcode` wrote: frame count, size (px) and frame rate."""

    frames: int
    width: int
    height: int
    fps: float


def prepared_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(height, width)`` of a prepared video whose source shows ``height x width`` square
    pixels: the short side brought down to ``short_side`` (never up; ``None`` keeps the
    size), aspect kept, each side rounded to an even number (4:2:0 chroma), at least 2."""
    scale = 1.0
    if short_side is not None and min(height, width) > short_side:
        scale = short_side / min(height, width)
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def _timed_frames(container: av.container.InputContainer, stream: av.VideoStream,
                  fps: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames with their presentation time in seconds from the stream's start."""
    start = stream.start_time or 0
    time_base = float(stream.time_base) if stream.time_base else 1.0 / fps
    previous = -1.0 / fps
    for frame in container.decode(stream):
        seconds = ((frame.pts - start) * time_base if frame.pts is not None
                   else previous + 1.0 / fps)
        previous = seconds
        yield seconds, frame


def _resampled(frames: Iterable[tuple[float, av.VideoFrame]], fps: float,
               source_fps: float) -> Iterator[av.VideoFrame]:
    """Frames at ``fps``: output frame ``k`` is the source frame shown at time ``k / fps``
    (the last one starting at or before it), until the last source frame's display ends."""
    eps = 1e-6  # timestamps are rounded to the time base
    k = 0
    last: tuple[float, av.VideoFrame] | None = None
    for seconds, frame in frames:
        while last is not None and k / fps < seconds - eps:
            yield last[1]
            k += 1
        last = (seconds, frame)
    if last is not None:
        end = last[0] + 1.0 / source_fps
        while k / fps < end - eps:
            yield last[1]
            k += 1


def transcode(source: Path, output: Path, settings: PrepareConfig) -> Encoded:
    """Re-encode the first video stream of ``source`` to ``output`` (an ``.mp4``, written
    directly: callers rename a temporary file) as described by ``settings``.

    Raises:
        VideoReadError: the source is missing, empty, not a video, or fails to decode.
    """
    info = probe_video(source)
    height, width = prepared_size(info.height, info.display_width, settings.short_side)
    shrinking = height * width < info.height * info.width
    interpolation = "AREA" if shrinking else "BILINEAR"
    try:
        with av.open(str(source)) as src:
            stream = src.streams.video[0]
            stream.thread_count = 1  # parallelism comes from the worker processes
            source_rate = stream.average_rate or stream.guessed_rate
            source_fps = float(source_rate) if source_rate else info.fps
            rate = (Fraction(settings.fps).limit_denominator(1001) if settings.fps
                    else Fraction(source_rate) if source_rate
                    else Fraction(info.fps).limit_denominator(1001))
            frames: Iterable[av.VideoFrame]
            timed = _timed_frames(src, stream, source_fps)
            if settings.fps:
                frames = _resampled(timed, settings.fps, source_fps)
            else:
                frames = (frame for _, frame in timed)
            count = _encode(frames, output, rate, width, height, interpolation, settings)
    except av.FFmpegError as error:
        raise VideoReadError.for_file(source, f"decode or encode error: {error}") from error
    if count == 0:
        raise VideoReadError.for_file(source, "no frames decoded")
    return Encoded(frames=count, width=width, height=height, fps=float(rate))


def _encode(frames: Iterable[av.VideoFrame], output: Path, rate: Fraction, width: int,
            height: int, interpolation: str, settings: PrepareConfig) -> int:
    reformatter = VideoReformatter()  # one scaler context for the whole video
    count = 0
    with av.open(str(output), mode="w", format="mp4") as dst:
        stream = dst.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, round(float(rate) * settings.keyframe_seconds))
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(settings.crf), "preset": settings.preset}
        time_base = Fraction(1) / rate
        for frame in frames:
            picture = reformatter.reformat(frame, width=width, height=height, format="yuv420p",
                                           interpolation=interpolation, threads=1)
            picture.pts = count
            picture.time_base = time_base
            # The scaler keeps the source's frame type, and FFmpeg's libx264 wrapper obeys it
            # (I/P/B forced as in the source): let the encoder choose, to our keyframe rate.
            picture.pict_type = av.video.frame.PictureType.NONE
            count += 1
            for packet in stream.encode(picture):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return count
