"""Where a clip is taken from, in time and in space: its source frame indices, then the crop,
resize and flip of those frames, then the model's normalisation.

Time: a clip is ``frames`` indices ``stride`` apart, spanning ``(frames - 1) * stride + 1``
source frames (pure functions of the video length and a generator). Training picks the start
uniformly among the positions where the span fits; evaluation takes ``num_clips`` evenly
spaced starts (the first at frame 0, the last ending at the last frame; a single clip is
centred). A video shorter than the span is, with ``short="pad"`` (the default), padded by
repeating its last frame (indices are clamped to ``num_frames - 1``; the stride is kept, so a
16-frame video at stride 4 gives 4 distinct frames and 12 copies of the last one), or with
``short="stretch"`` sampled at the largest stride that fits (:func:`fitting_stride`;
VideoMAE's choice for short videos), which pads only a video with fewer than ``frames``
frames. Every clip has exactly ``frames`` indices.

Space: frames are decoded at :func:`output_size` (the short side at the dataset's decode size,
aspect kept). The geometric part is explicit data: a :class:`Geometry` (crop box, output size,
flip flag) drawn by :func:`sample_train_geometry` (VideoMAE's multi-scale crop) or listed by
:func:`eval_geometries` (short-side resize + left/centre/right crops), then applied to uint8
frames ``[T, H, W, 3]`` by :func:`apply_geometry`. Code that must see exactly the frames the
model sees (a point tracker, ...) runs on that uint8 output; :func:`transform_points` maps
point coordinates through the same geometry. :func:`normalize` then turns the uint8 frames
into the model's float ``[C, T, H, W]`` input.

Point convention: ``(x, y)`` in pixels, with the centre of pixel column ``i`` at ``x = i``
(OpenCV's convention; a pixel's area spans ``[i - 0.5, i + 0.5]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Offsets as fractions (in quarters) of the free space (image - crop), VideoMAE's
# ``fill_fix_offset(more_fix_crop=True)``: corners, centre, edge midpoints, quarter points.
_FIXED_OFFSETS_BASIC = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2))
_FIXED_OFFSETS_MORE = ((0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


def clip_span(frames: int, stride: int) -> int:
    """Source frames covered by a clip of ``frames`` indices ``stride`` apart."""
    return (frames - 1) * stride + 1


def fitting_stride(num_frames: int, frames: int, stride: int) -> int:
    """The largest stride ``<= stride`` whose clip span fits ``num_frames`` (at least 1)."""
    if frames < 2:
        return stride
    return max(1, min(stride, (num_frames - 1) // (frames - 1)))


def needs_padding(num_frames: int, frames: int, stride: int, short: str = "pad") -> bool:
    """Whether a clip of this video repeats frames to reach ``frames`` indices."""
    if short == "stretch":
        stride = fitting_stride(num_frames, frames, stride)
    return num_frames < clip_span(frames, stride)


def clip_indices(
    num_frames: int,
    frames: int,
    stride: int,
    rng: np.random.Generator | None,
    clip_index: int | None = None,
    num_clips: int = 1,
    short: str = "pad",
) -> np.ndarray:
    """Frame indices of one clip, ``[frames]`` int64, each in ``[0, num_frames)``.

    Args:
        num_frames: frames in the video (>= 1).
        frames: frames in the clip.
        stride: distance between consecutive clip frames, in source frames.
        rng: training mode when given and ``clip_index`` is ``None``: the start is drawn
            uniformly from ``[0, num_frames - span]`` with this generator.
        clip_index: evaluation mode: which of ``num_clips`` evenly spaced clips (the
            default when ``rng`` is ``None``: clip 0 of ``num_clips``, i.e. the centre clip
            when ``num_clips == 1``).
        num_clips: number of evaluation clips the video is split into.
        short: ``"pad"`` or ``"stretch"``, see the module docstring.

    Short videos (``num_frames < span``) start at 0 and repeat the last frame (after
    shrinking the stride with ``short="stretch"``).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got {frames} and {stride}")
    if short == "stretch":
        stride = fitting_stride(num_frames, frames, stride)
    elif short != "pad":
        raise ValueError(f"short must be 'pad' or 'stretch', got {short!r}")
    room = max(num_frames - clip_span(frames, stride), 0)  # possible starts - 1
    if rng is not None and clip_index is None:
        start = int(rng.integers(0, room + 1))
    else:
        start = eval_clip_start(room, clip_index or 0, num_clips)
    indices = start + stride * np.arange(frames, dtype=np.int64)
    return np.minimum(indices, num_frames - 1)


def eval_clip_start(room: int, clip_index: int, num_clips: int) -> int:
    """Start of evaluation clip ``clip_index`` of ``num_clips`` given ``room`` spare frames.

    Starts are ``round(i * room / (num_clips - 1))``: first clip at 0, last at ``room``;
    one clip sits at ``room // 2`` (centred).
    """
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index must be in [0, {num_clips}), got {clip_index}")
    if num_clips == 1:
        return room // 2
    return round(clip_index * room / (num_clips - 1))


def multi_clip_indices(
    num_frames: int,
    frames: int,
    stride: int,
    rng: np.random.Generator,
    num_sample: int,
    short: str = "pad",
) -> np.ndarray:
    """``num_sample`` independent training clips of one video, ``[num_sample, frames]``."""
    return np.stack([clip_indices(num_frames, frames, stride, rng, short=short)
                     for _ in range(num_sample)])


def eval_clips_indices(num_frames: int, frames: int, stride: int, num_clips: int,
                       short: str = "pad") -> np.ndarray:
    """All ``num_clips`` evenly spaced evaluation clips, ``[num_clips, frames]``."""
    return np.stack([clip_indices(num_frames, frames, stride, None, i, num_clips, short)
                     for i in range(num_clips)])



@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box in pixels of some frame: left ``x``, top ``y``, ``width``,
    ``height`` (pixel-area coordinates: the box covers columns ``x .. x + width - 1`` when
    integral)."""

    x: float
    y: float
    width: float
    height: float

    def scaled(self, sx: float, sy: float) -> CropBox:
        """The same region in frames resized by ``sx`` horizontally and ``sy`` vertically."""
        return CropBox(self.x * sx, self.y * sy, self.width * sx, self.height * sy)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True)
class Geometry:
    """Crop ``box`` out of each frame, resize it to ``size x size``, then mirror if ``flip``."""

    box: CropBox
    size: int
    flip: bool = False


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


def multiscale_crop_box(
    height: int,
    width: int,
    scales: Sequence[float],
    rng: np.random.Generator,
    out_size: int | None = None,
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
) -> CropBox:
    """VideoMAE's ``GroupMultiScaleCrop`` box for a ``height x width`` frame (integral px).

    Candidate sides are ``int(min(height, width) * s)`` for ``s`` in ``scales`` (snapped to
    ``out_size`` when within 2 px of it); the crop's width and height take scale indices
    ``i``, ``j`` with ``|i - j| <= max_distort``, the pair drawn uniformly. With
    ``fix_crop`` the offset is one of 5 (or 13 with ``more_fix_crop``) fixed grid positions
    (corners, centre, ...), otherwise uniform.
    """
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    if out_size is not None:
        sides = [out_size if abs(s - out_size) < 3 and out_size <= base else s for s in sides]
    sides = [max(1, s) for s in sides]
    pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides)
             if abs(i - j) <= max_distort]
    crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
    crop_w, crop_h = min(crop_w, width), min(crop_h, height)
    if fix_crop:
        offsets = _FIXED_OFFSETS_BASIC + (_FIXED_OFFSETS_MORE if more_fix_crop else ())
        qx, qy = offsets[int(rng.integers(len(offsets)))]
        x = qx * ((width - crop_w) // 4)
        y = qy * ((height - crop_h) // 4)
    else:
        x = int(rng.integers(0, width - crop_w + 1))
        y = int(rng.integers(0, height - crop_h + 1))
    return CropBox(x, y, crop_w, crop_h)


def sample_train_geometry(
    height: int,
    width: int,
    size: int,
    scales: Sequence[float],
    flip: bool,
    rng: np.random.Generator,
) -> Geometry:
    """Training geometry: multi-scale crop, resize to ``size``, mirror with p=0.5 if ``flip``.

    ``flip`` must be ``False`` for direction-sensitive data (left vs right is a class).
    """
    box = multiscale_crop_box(height, width, scales, rng, out_size=size)
    mirrored = bool(rng.random() < 0.5) if flip else False
    return Geometry(box=box, size=size, flip=mirrored)


def eval_geometries(height: int, width: int, size: int, num_crops: int = 1) -> list[Geometry]:
    """Evaluation geometries: the short side resized to ``size`` then ``num_crops`` square
    crops spread along the long side (1: centre; 3: left/top, centre, right/bottom).

    Expressed as square boxes of side ``min(height, width)`` in the input frames, so frames
    decoded at short side ``size`` are cropped without resampling.
    """
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    side = min(height, width)
    room = max(height, width) - side
    if num_crops == 1:
        offsets = [room // 2]
    else:
        offsets = [round(i * room / (num_crops - 1)) for i in range(num_crops)]
    if width >= height:
        boxes = [CropBox(o, 0, side, side) for o in offsets]
    else:
        boxes = [CropBox(0, o, side, side) for o in offsets]
    return [Geometry(box=b, size=size, flip=False) for b in boxes]


def apply_geometry(frames: np.ndarray | torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Crop, resize and mirror uint8 frames: ``[T, H, W, 3]`` -> ``[T, S, S, 3]`` uint8.

    The box must be integral and inside the frame. Resizing is bilinear
    (``align_corners=False``), antialiased when shrinking.
    """
    video = torch.as_tensor(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {tuple(video.shape)}")
    x, y, w, h = (round(v) for v in geometry.box.as_tuple())
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > video.shape[2] or y + h > video.shape[1]:
        raise ValueError(f"crop box {geometry.box} outside frames of size "
                         f"{video.shape[1]}x{video.shape[2]}")
    crop = video[:, y:y + h, x:x + w]
    size = geometry.size
    if (h, w) != (size, size):
        # [T, 3, h, w] view with channels-last strides: the fast path for uint8 on CPU.
        planar = crop.permute(0, 3, 1, 2)
        shrink = h > size or w > size
        resized = F.interpolate(planar, size=(size, size), mode="bilinear",
                                align_corners=False, antialias=shrink)
        crop = resized.permute(0, 2, 3, 1)
    if geometry.flip:
        crop = crop.flip(2)
    return crop.contiguous()


def transform_points(
    points: np.ndarray | torch.Tensor,
    crop_box: CropBox,
    out_size: int | tuple[int, int],
    flipped: bool,
) -> np.ndarray | torch.Tensor:
    """Map points ``[..., 2]`` (x, y) in input pixels to output pixels of a geometry.

    ``out_size`` is ``S`` or ``(height, width)``. The map is the one :func:`apply_geometry`
    applies to pixels: ``x' = (x + 0.5 - box.x) * S_w / box.width - 0.5``, mirrored as
    ``x' -> S_w - 1 - x'`` when ``flipped`` (likewise for ``y`` without the mirror). Points
    may land outside ``[0, S)`` (they were outside the crop). Returns the input's type, float.
    """
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    sx, sy = out_w / crop_box.width, out_h / crop_box.height
    if isinstance(points, torch.Tensor):
        pts = points.to(torch.float32 if not points.is_floating_point() else points.dtype)
        x = (pts[..., 0] + 0.5 - crop_box.x) * sx - 0.5
        y = (pts[..., 1] + 0.5 - crop_box.y) * sy - 0.5
        if flipped:
            x = (out_w - 1) - x
        return torch.stack([x, y], dim=-1)
    arr = np.asarray(points)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    arr = arr.astype(np.float64)
    x = (arr[..., 0] + 0.5 - crop_box.x) * sx - 0.5
    y = (arr[..., 1] + 0.5 - crop_box.y) * sy - 0.5
    if flipped:
        x = (out_w - 1) - x
    return np.stack([x, y], axis=-1).astype(dtype)


def normalize(
    frames: np.ndarray | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (0..255) -> float32 ``[3, T, H, W]``, ``(x / 255 - mean) / std``."""
    video = torch.as_tensor(frames)
    clip = video.permute(3, 0, 1, 2).to(torch.float32)
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32)
    shift = torch.tensor([m / s for m, s in zip(mean, std, strict=True)], dtype=torch.float32)
    clip = clip * scale.view(3, 1, 1, 1) - shift.view(3, 1, 1, 1)
    return clip.contiguous()


def denormalize(
    clip: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Inverse of :func:`normalize` up to the 1/255 scale: ``[..., 3, T, H, W]`` -> float
    values in ``[0, 1]`` (not clamped), same layout."""
    m = torch.tensor(mean, dtype=clip.dtype, device=clip.device).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=clip.dtype, device=clip.device).view(3, 1, 1, 1)
    return clip * s + m
