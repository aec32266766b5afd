"""Writing frames to a video file: H.264 ``yuv420p`` with PyAV.

Whole clips held in memory as ``[T, H, W, 3]`` uint8 RGB, as the synthetic dataset, tests and
benchmarks make them; preparing a dataset re-encodes with
:func:`~motionmae.data.transcode.transcode` instead (frame by frame, resized, at a keyframe
rate).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from motionmae.data.video_info import PathLike

__all__ = ["write_video"]


def write_video(path: PathLike, frames: np.ndarray, fps: float = 25.0, *, crf: int = 18,
                preset: str = "veryfast") -> None:
    """Encode ``frames`` ``[T, H, W, 3]`` uint8 RGB as H.264 (``yuv420p``) to ``path``.

    ``H`` and ``W`` must be even (4:2:0 chroma). ``crf`` sets the quality (lower is better;
    18 keeps fine motion); ``preset`` trades encoding speed for size. The container follows
    the suffix (``.mp4``, ``.mkv``, ...). Writes ``path`` directly: write to a temporary
    name and rename if a reader must never see a partial file.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                         f"{frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame size {height}x{width} must be even for yuv420p")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
