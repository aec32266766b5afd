"""Which clips of a video a cache holds, and training clips drawn from them.

Every offline cache (point tracks, teacher features) holds the same clips of a video:
``clips`` evenly spaced clips of ``frames`` frames ``stride`` source frames apart
(:class:`ClipLayout`, a run's ``data.frames``, ``data.stride`` and ``cache.clips``). A run that
reads a cache (``cache.path``) draws its training clips from those same clips
(:meth:`ClipLayout.sample`), or every sample misses the cache. Trade-off: temporal jitter is
limited to ``clips`` start positions per video (instead of every frame); spatial augmentation
(multi-scale crop, flip) is unrestricted, because the caches cover the whole decoded frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClipLayout"]


@dataclass(frozen=True)
class ClipLayout:
    """``clips`` evenly spaced clips of ``frames`` frames, ``stride`` source frames apart.

    Picklable (the dataset's clip sampler in the loader workers is :meth:`sample`).
    """

    frames: int = 16
    stride: int = 4
    clips: int = 4

    def __post_init__(self) -> None:
        for name in ("frames", "stride", "clips"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ClipLayout.{name}: must be an integer >= 1, got {value!r}")

    def starts(self, num_frames: int) -> np.ndarray:
        """First source frame of each cached clip: ``[C]`` int64, sorted, ``C <= clips``.

        ``clips`` starts evenly spaced over ``[0, room]`` with ``room = max(num_frames -
        span, 0)`` and ``span = (frames - 1) * stride + 1``: ``round(i * room / (clips -
        1))`` (first at 0, last ending at the last frame); one clip is centred (``room //
        2``). Duplicates (short videos) are dropped.
        """
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        room = max(num_frames - ((self.frames - 1) * self.stride + 1), 0)
        if self.clips == 1:
            return np.array([room // 2], dtype=np.int64)
        starts = [round(i * room / (self.clips - 1)) for i in range(self.clips)]
        return np.unique(np.asarray(starts, dtype=np.int64))

    def indices(self, num_frames: int) -> np.ndarray:
        """Source frame indices of every cached clip, ``[C, frames]`` int64: ``start + stride
        * arange(frames)`` clamped to ``num_frames - 1`` (the dataset's padding of short
        videos)."""
        starts = self.starts(num_frames)
        indices = starts[:, None] + self.stride * np.arange(self.frames, dtype=np.int64)[None, :]
        return np.minimum(indices, num_frames - 1)

    def sample(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """A training clip drawn uniformly from the cached ones: ``[frames]`` int64 indices.

        The dataset's ``clip_sampler`` when a cache is configured (in place of
        :func:`motionmae.data.transforms.clip_indices`); one ``rng.integers`` draw.
        """
        clips = self.indices(num_frames)
        return clips[int(rng.integers(len(clips)))].copy()
