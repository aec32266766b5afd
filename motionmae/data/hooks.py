"""Sample hooks: per-sample work done in the loader workers on the frames the model sees.

A hook turns a :class:`HookInput` into extra sample entries (e.g. point tracks, M3Video
trajectory targets). Hooks that need every source frame between the first and the last frame
of the clip (the full frame rate, while the model sees every ``stride``-th frame) set
``needs_dense_frames = True``; the dataset then decodes and augments those frames too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from motionmae.data.lists import VideoEntry
from motionmae.data.transforms import Geometry


@dataclass(frozen=True)
class HookInput:
    """What a hook sees of one sample.

    Attributes:
        frames: ``[T, S, S, 3]`` uint8, read-only: the model's frames after crop/resize/flip.
        entry: the video.
        frame_indices: ``[T]`` int, source frame index of each clip frame.
        geometry: the crop box (in decoded pixels), output size and flip that were applied.
        dense_frames: ``[F, S, S, 3]`` uint8 with ``F = frame_indices[-1] - frame_indices[0]
            + 1``: every source frame of the clip's span, same geometry; None unless the hook
            sets ``needs_dense_frames``. Clip frame ``t`` is ``dense_frames[frame_indices[t] -
            frame_indices[0]]``.
    """

    frames: np.ndarray
    entry: VideoEntry
    frame_indices: np.ndarray
    geometry: Geometry
    dense_frames: np.ndarray | None = None


@runtime_checkable
class SampleHook(Protocol):
    """Adds entries to a sample; must be picklable (it runs in worker processes)."""

    needs_dense_frames: bool

    def __call__(self, sample: HookInput) -> dict[str, torch.Tensor]: ...
