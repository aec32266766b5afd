"""One video's cached tracks: :class:`CachedTracks` in memory and as a shard's arrays.

In memory the tracks are absolute positions (float32). In the shard
(:func:`~motionmae.cache.shards.write_shard`, ``np.savez_compressed``, read with
``allow_pickle=False``) they are:

========================  ===========================  ===========================================
``meta``                  uint8 ``[bytes]``            JSON: format version, key, video, settings
``clip_starts``           int64 ``[C]``                first source frame of each clip
``frame_indices``         int64 ``[C, T]``             source frame of each clip frame
``grid_x``, ``grid_y``    float32 ``[nx]``, ``[ny]``   query grid axes, decoded pixels
``grid_spacing``          float64 ``[]``               nominal spacing, pixels
``offsets``               float16 ``[C, T, N, 2]``     ``tracks - query``, pixels, ``N = ny * nx``
``visible_packed``        uint8 ``[C, T, ceil(N/8)]``  ``np.packbits(visible, axis=-1)``
``frame_size``            int64 ``[2]``                decoded ``(height, width)``
``source_size``           int64 ``[2]``                source ``(height, display width)``
``checksum``              uint8 ``[32]``               sha256 of all other arrays (verified)
========================  ===========================  ===========================================

Tracks are stored as float16 displacements from the query position: displacements are small,
so the float16 step is at most 1/32 px below 64 px of motion (absolute positions in float16
would step 0.25 px at x >= 256), and they compress better.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from motionmae.motion.grid_tracks import grid_points

__all__ = ["CachedTracks"]

OFFSET_DTYPE = np.float16
_F16_MAX = 65000.0


@dataclass
class CachedTracks:
    """One video's cached tracks (in memory: absolute positions, float32).

    Attributes:
        clip_starts: ``[C]`` int64, first source frame of each clip.
        frame_indices: ``[C, T]`` int64, source frame of each clip frame.
        grid_x, grid_y: ``[nx]``, ``[ny]`` float32, query grid axes (decoded pixels); the
            queries are ``(grid_x[j], grid_y[i])`` at clip frame 0, ``N = ny * nx`` row-major.
        grid_spacing: nominal grid spacing, pixels.
        tracks: ``[C, T, N, 2]`` float32 (x, y) decoded pixels.
        visible: ``[C, T, N]`` bool.
        frame_size: decoded ``(height, width)``, pixels.
        source_size: the video's ``(height, display width)``, pixels (to map to frames
            decoded at another short side).
    """

    clip_starts: np.ndarray
    frame_indices: np.ndarray
    grid_x: np.ndarray
    grid_y: np.ndarray
    grid_spacing: float
    tracks: np.ndarray
    visible: np.ndarray
    frame_size: tuple[int, int]
    source_size: tuple[int, int]

    def __post_init__(self) -> None:
        c, t = self.frame_indices.shape
        n = len(self.grid_x) * len(self.grid_y)
        if self.clip_starts.shape != (c,):
            raise ValueError(f"clip_starts: expected [{c}], got {self.clip_starts.shape}")
        if self.tracks.shape != (c, t, n, 2):
            raise ValueError(f"tracks: expected [{c}, {t}, {n}, 2], got {self.tracks.shape}")
        if self.visible.shape != (c, t, n):
            raise ValueError(f"visible: expected [{c}, {t}, {n}], got {self.visible.shape}")
        if len(self.grid_x) < 2 or len(self.grid_y) < 2:
            raise ValueError("the query grid needs at least 2 points per axis")

    @property
    def queries(self) -> np.ndarray:
        """``[N, 2]`` float32 (x, y) query positions at clip frame 0, decoded pixels."""
        return grid_points(self.grid_x, self.grid_y)

    def find_clip(self, frame_indices: np.ndarray) -> tuple[int, np.ndarray] | None:
        """Which cached clip serves a sample's clip, and which of its frames.

        A cached clip serves when it starts at the sample's first frame (the grid is regular
        there) and contains every frame of the sample (same clip, or fewer frames, or a
        multiple of the stride).

        Args:
            frame_indices: ``[T']`` source frame of each sample clip frame.

        Returns:
            ``(clip c, rows [T'] int64)`` with ``frame_indices[c][rows] == frame_indices``,
            or ``None`` when no cached clip serves.
        """
        wanted = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        for c in np.flatnonzero(self.frame_indices[:, 0] == wanted[0]):
            row = self.frame_indices[c]
            pos = np.minimum(np.searchsorted(row, wanted), len(row) - 1)
            if np.array_equal(row[pos], wanted):
                return int(c), pos.astype(np.int64)
        return None

    def arrays(self) -> dict[str, np.ndarray]:
        """The shard's arrays (without ``meta`` and ``checksum``)."""
        offsets = self.tracks - self.queries[None, None]
        offsets = np.clip(np.nan_to_num(offsets, nan=0.0), -_F16_MAX, _F16_MAX)
        return {
            "clip_starts": np.asarray(self.clip_starts, np.int64),
            "frame_indices": np.asarray(self.frame_indices, np.int64),
            "grid_x": np.asarray(self.grid_x, np.float32),
            "grid_y": np.asarray(self.grid_y, np.float32),
            "grid_spacing": np.asarray(self.grid_spacing, np.float64),
            "offsets": offsets.astype(OFFSET_DTYPE),
            "visible_packed": np.packbits(np.asarray(self.visible, bool), axis=-1),
            "frame_size": np.asarray(self.frame_size, np.int64),
            "source_size": np.asarray(self.source_size, np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> CachedTracks:
        """Inverse of :meth:`arrays`; raises ``ValueError``/``KeyError`` on bad content."""
        xs, ys = arrays["grid_x"], arrays["grid_y"]
        offsets = arrays["offsets"]
        n = len(xs) * len(ys)
        visible = np.unpackbits(arrays["visible_packed"], axis=-1, count=n).astype(bool)
        tracks = offsets.astype(np.float32) + grid_points(xs, ys)[None, None]
        frame_size = tuple(int(v) for v in arrays["frame_size"])
        source_size = tuple(int(v) for v in arrays["source_size"])
        if len(frame_size) != 2 or len(source_size) != 2:
            raise ValueError("frame_size and source_size must hold 2 values")
        return cls(clip_starts=arrays["clip_starts"], frame_indices=arrays["frame_indices"],
                   grid_x=xs, grid_y=ys, grid_spacing=float(arrays["grid_spacing"]),
                   tracks=tracks, visible=visible, frame_size=frame_size,  # type: ignore[arg-type]
                   source_size=source_size)  # type: ignore[arg-type]
