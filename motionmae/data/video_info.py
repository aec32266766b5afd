"""What a video stream declares, the size it is read at, and the error for an unreadable video.

:class:`VideoInfo` (frame count, rate, coded size, sample aspect) is what the reader and
:func:`~motionmae.data.video_reader.probe_video` report; :func:`output_size` is the frame
size a read at a given short side produces (display aspect kept). :class:`VideoReadError` is
raised for every failure to produce frames; it names the file and the reason and survives the
trip back from a ``DataLoader`` worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionmae.errors import DataError

__all__ = ["PathLike", "VideoInfo", "VideoReadError", "output_size"]

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
        sample_aspect: width of a pixel over its height (1.0 for square pixels; 12/11 for
            PAL-style CIF, ...). Resized reads keep the display aspect
            ``width * sample_aspect / height``.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    sample_aspect: float = 1.0

    @property
    def display_width(self) -> int:
        """Width in square pixels, ``round(width * sample_aspect)``."""
        return max(1, round(self.width * self.sample_aspect))


def output_size(height: int, width: int, size: int | None) -> tuple[int, int]:
    """``(height, width)`` after resizing the short side to ``size`` px keeping the aspect.

    ``size=None`` keeps the input size. Sides are rounded to the nearest pixel, at least 1.
    """
    if size is None:
        return height, width
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size
