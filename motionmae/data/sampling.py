"""Which frames of a video make a clip: pure functions of the video length and a generator.

A clip is ``frames`` indices ``stride`` apart, spanning ``(frames - 1) * stride + 1`` source
frames. Training picks the start uniformly among the positions where the span fits;
evaluation takes ``num_clips`` evenly spaced starts (the first at frame 0, the last ending at
the last frame; a single clip is centred). A video shorter than the span is, with
``short="pad"`` (the default), padded by repeating its last frame (indices are clamped to
``num_frames - 1``; the stride is kept, so a 16-frame video at stride 4 gives 4 distinct
frames and 12 copies of the last one), or with ``short="stretch"`` sampled at the largest
stride that fits (:func:`fitting_stride`; VideoMAE's choice for short videos), which pads only
a video with fewer than ``frames`` frames. Every clip has exactly ``frames`` indices.
"""

from __future__ import annotations

import numpy as np


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
