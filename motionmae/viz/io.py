"""Write images (PNG, via OpenCV) and videos (MP4 H.264 or GIF, via PyAV).

Images and frames are RGB ``uint8``. Parent folders are created; errors name the path.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")
_GIF_TICKS = 100  # GIF frame delays are in 1/100 s


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write ``image`` (``[H, W, 3]`` RGB or ``[H, W]`` grey, uint8) as a PNG; returns the path."""
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
        image.ndim == 3 and image.shape[-1] != 3
    ):
        raise ValueError(
            f"{path}: expected a uint8 [H, W, 3] or [H, W] image; got {image.dtype} "
            f"{tuple(image.shape)}"
        )
    bgr = image if image.ndim == 2 else np.ascontiguousarray(image[..., ::-1])
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.tobytes())
    except OSError as error:
        raise OSError(f"cannot write {path}: {error}") from error
    return path


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write ``frames`` (``[T, H, W, 3]`` uint8 RGB) as a video chosen by the path's suffix.

    - ``.mp4``: H.264 (libx264, ``yuv420p``, CRF 18). Odd heights/widths are padded by one
      black row/column at the bottom/right, since 4:2:0 chroma needs even sizes.
    - ``.gif``: FFmpeg's GIF encoder with one 256-colour palette for the whole clip (median
      cut, exact when the clip has at most 256 colours). Delays are whole 1/100 s, so the
      frame rate is approximate.

    Returns the path.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(
            f"{path}: expected uint8 frames [T, H, W, 3] with T >= 1; got {frames.dtype} "
            f"{tuple(frames.shape)}"
        )
    if fps <= 0:
        raise ValueError(f"{path}: fps must be positive; got {fps}")
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported video suffix {suffix!r}; use one of {VIDEO_SUFFIXES}"
        )
    import av

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".mp4":
            _write_mp4(av, path, frames, fps)
        else:
            _write_gif(av, path, frames, fps)
    except (av.FFmpegError, OSError) as error:
        raise OSError(f"cannot write {path}: {error}") from error
    log.debug("wrote %d frames to %s", len(frames), path)
    return path


def _pad_even(frames: np.ndarray) -> np.ndarray:
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))


def _write_mp4(av: ModuleType, path: Path, frames: np.ndarray, fps: float) -> None:
    frames = _pad_even(frames)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_gif(av: ModuleType, path: Path, frames: np.ndarray, fps: float) -> None:
    if "gif" not in av.codecs_available:
        raise OSError("this PyAV build has no GIF encoder; write an .mp4 instead")
    palette, indices = quantize(frames)
    argb = np.zeros((256, 4), np.uint8)
    argb[:, 0] = 255
    argb[: len(palette), 1:] = palette
    with av.open(str(path), mode="w", format="gif") as container:
        stream = container.add_stream("gif", rate=Fraction(_GIF_TICKS))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "pal8"
        stream.time_base = Fraction(1, _GIF_TICKS)
        for i, index in enumerate(indices):
            frame = av.VideoFrame.from_ndarray((np.ascontiguousarray(index), argb), format="pal8")
            frame.pts = round(i * _GIF_TICKS / fps)
            frame.time_base = Fraction(1, _GIF_TICKS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def quantize(frames: np.ndarray, colors: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One palette for a whole clip.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        colors: palette size, at most 256.

    Returns:
        ``palette [K, 3]`` uint8 (``K <= colors``) and ``indices [T, H, W]`` uint8. Exact when
        the clip has at most ``colors`` distinct colours; otherwise median cut over a 5-bit
        per channel histogram, each pixel mapped to the nearest palette colour.
    """
    flat = frames.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    unique, inverse = np.unique(packed, return_inverse=True)
    if len(unique) <= colors:
        palette = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], -1)
        return palette.astype(np.uint8), inverse.reshape(frames.shape[:3]).astype(np.uint8)
    bins = (flat >> 3).astype(np.int32)
    bin_id = (bins[:, 0] << 10) | (bins[:, 1] << 5) | bins[:, 2]
    counts = np.bincount(bin_id, minlength=1 << 15).astype(np.float64)
    sums = np.stack([np.bincount(bin_id, flat[:, c], 1 << 15) for c in range(3)], -1)
    occupied = np.flatnonzero(counts)
    palette = _median_cut(sums[occupied] / counts[occupied, None], counts[occupied], colors)
    ids = np.arange(1 << 15)
    centres = np.stack([ids >> 10, (ids >> 5) & 31, ids & 31], -1) * 8.0 + 3.5
    lut = np.empty(1 << 15, np.uint8)
    for start in range(0, 1 << 15, 4096):  # nearest palette colour per histogram bin
        block = centres[start : start + 4096]
        dist = ((block[:, None, :] - palette[None].astype(np.float64)) ** 2).sum(-1)
        lut[start : start + 4096] = dist.argmin(1)
    return palette, lut[bin_id].reshape(frames.shape[:3])


def _median_cut(means: np.ndarray, weights: np.ndarray, colors: int) -> np.ndarray:
    """Split weighted colours ``[M, 3]`` into ``colors`` boxes; returns box means ``[K, 3]``."""
    def span(box: np.ndarray) -> float:
        return float(np.ptp(means[box], axis=0).max()) if len(box) > 1 else -1.0

    boxes = [np.arange(len(means))]
    spans = [span(boxes[0])]
    while len(boxes) < colors:
        i = int(np.argmax(spans))
        if spans[i] <= 0:
            break
        box = boxes.pop(i)
        spans.pop(i)
        channel = int(np.argmax(np.ptp(means[box], axis=0)))
        order = box[np.argsort(means[box, channel], kind="stable")]
        cum = np.cumsum(weights[order])
        cut = int(np.clip(np.searchsorted(cum, cum[-1] / 2), 1, len(order) - 1))
        for part in (order[:cut], order[cut:]):
            boxes.append(part)
            spans.append(span(part))
    palette = [np.average(means[b], axis=0, weights=weights[b]) for b in boxes]
    return np.clip(np.round(palette), 0, 255).astype(np.uint8)
