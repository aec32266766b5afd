"""What a video stream declares, and the error for an unreadable video.

:class:`VideoInfo` (frame count, rate, coded and display size, sample aspect) is what the
reader and :func:`~motionmae.data.video_reader.probe_video` report; a read at a given short
side keeps the display aspect (:func:`~motionmae.data.transforms.output_size` of the display
size). :class:`VideoReadError` is raised for every failure to produce frames; it names the
file and the reason and survives the trip back from a ``DataLoader`` worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionmae.errors import DataError

__all__ = ["PathLike", "VideoInfo", "VideoReadError"]

PathLike = str | Path


class VideoReadError(DataError):
    """A video cannot be read; ``str(error)`` is ``"<path>: <reason>"``.

    The constructor takes a single message so the error survives being re-raised by a
    ``DataLoader`` worker (which rebuilds exceptions from their message). ``path`` and
    ``reason`` are kept as attributes when known.
    """

    def __init__(self, message: str, *, path: PathLike | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = reason

    @classmethod
    def for_file(cls, path: PathLike, reason: str) -> VideoReadError:
        return cls(f"{path}: {reason}", path=path, reason=reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), str(self), self.path, self.reason))


def _rebuild_error(cls: type[VideoReadError], message: str, path: str | None,
                   reason: str | None) -> VideoReadError:
    return cls(message, path=path, reason=reason)


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream declares.

    Attributes:
        num_frames: frames in the stream (see :func:`probe_video` for where it comes from).
        fps: average frame rate, frames per second.
        width: coded frame width in pixels.
        height: coded frame height in pixels.
        duration: length in seconds (``num_frames / fps`` when the container has no duration).
        display_width: width in square pixels, ``max(1, round(width * sample_aspect))``
            (the reader fills it when it probes the stream).
        sample_aspect: width of a pixel over its height (1.0 for square pixels; 12/11 for
            PAL-style CIF, ...). Resized reads keep the display aspect
            ``display_width / height``.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    display_width: int
    sample_aspect: float = 1.0
