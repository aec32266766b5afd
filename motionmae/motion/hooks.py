"""``TracksHook``: point tracks of one query point per patch, per sample, in the loader
workers.

The TrackMAE target and motion-aware masking need, for every sample, the tracks of
``N = (S // patch) ** 2`` query points of clip frame 0, one per patch (the patch centres, or
CoTracker's own grid: ``tracking.grid``, :func:`~motionmae.motion.protocol.query_grid`),
through the ``T`` clip frames, in pixels of the clip the model sees (after crop, resize and
flip). :class:`TracksHook` makes them either

* **online**: the tracker runs on ``HookInput.frames``, the very uint8 frames the model sees
  (so a flip or a crop is seen by the tracker as by the model), or on every
  ``frame_step``-th of them (:func:`~motionmae.motion.frame_step.track_every`); or
* **from the cache** (:class:`~motionmae.motion.cache.TrackCache`): when the sample's clip is
  a cached clip (same first frame; see :meth:`CachedTracks.find_clip`), the query points
  are mapped back to decoded pixels through the inverse of the sample's geometry, their
  tracks are interpolated bilinearly from the cached dense grid's tracks (visible when all 4
  grid neighbours are), and mapped forward to clip pixels with
  :func:`~motionmae.data.transforms.transform_points` (crop, resize, flip). Points outside
  the grid's hull or outside the clip frame are not visible, as an online tracker would
  report a point that left its frame. A miss (no entry, clip not cached) tracks online and
  is counted in :attr:`TracksHook.stats` (per worker process).

With ``windows`` (the tracks target's ``queries: every_tubelet``) the hook also tracks, online,
the same query grid *re-seeded at the start of every tubelet window*, each over its own window
only, and adds the displacement of each: the motion of what is at the token's place in its
own tubelet, not of what was there in frame 0. The windows are ``u + 1`` frames long, so this
costs about what tracking the frame-0 grid through the clip costs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from motionmae.data.transforms import output_size, transform_points
from motionmae.motion.cache import CacheSettings, TrackCache
from motionmae.motion.frame_step import track_every
from motionmae.motion.grid_tracks import interpolate_grid_tracks
from motionmae.motion.protocol import (
    PointTracker,
    check_grid_settings,
    in_frame,
    patch_grid_queries,
    query_grid,
)
from motionmae.motion.registry import make_tracker

if TYPE_CHECKING:
    from motionmae.data.hooks import HookInput
    from motionmae.data.transforms import Geometry
    from motionmae.motion.cached_tracks import CachedTracks

__all__ = ["HookStats", "TracksHook", "cached_tracks_for_geometry"]

logger = logging.getLogger(__name__)

# frames [T, H, W, 3] uint8, queries [N, 3] -> (tracks [T, N, 2] float32, visible [T, N] bool)
TrackCall = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class HookStats:
    """Where a :class:`TracksHook`'s tracks came from (counts in this process).

    Attributes:
        cached: samples served from the cache.
        no_entry: cache misses because the video has no valid entry.
        clip_not_cached: cache misses because the sample's clip is not a cached one.
        online: samples tracked online (misses, plus every sample when there is no cache).
    """

    cached: int = 0
    no_entry: int = 0
    clip_not_cached: int = 0
    online: int = 0

    @property
    def misses(self) -> int:
        return self.no_entry + self.clip_not_cached


class TracksHook:
    """Sample hook adding ``tracks`` float32 ``[T, N, 2]`` (x, y clip pixels) and
    ``track_visible`` bool ``[T, N]`` for the ``N = (S // patch) ** 2`` query points of clip
    frame 0, :func:`~motionmae.motion.protocol.query_grid` ``(grid, S, S, patch)``, in ViT
    token order.

    Args:
        patch: patch side of the model, pixels.
        grid: the query points, ``patch_centres`` or ``cotracker`` (``tracking.grid``).
        frame_step: the online tracker sees every ``frame_step``-th clip frame
            (``tracking.frame_step``); must be the cache's.
        tracker: backend name for online tracking (see :func:`make_tracker`).
        cache: a track cache to read first; its tracker and settings must be this hook's.
        tracker_settings: backend settings (fields of its config dataclass).
        decode_size: short side, pixels, at which the dataset decodes the frames the
            geometry's crop box refers to; default: the cache's ``decode_size``.
        min_visible_weight: visibility rule of cached tracks, see
            :func:`~motionmae.motion.grid_tracks.interpolate_grid_tracks` (``None``: a point is
            visible when all 4 grid neighbours are).
        windows: ``(starts, ends)`` clip frames of the tubelet windows (``t`` ints each); when
            given, the hook also adds ``tubelet_motion`` float32 ``[t, N, 2]``, the
            displacement from ``starts[k]`` to ``ends[k]`` of the query grid seeded in frame
            ``starts[k]``, and ``tubelet_motion_visible`` bool ``[t, N]`` (visible at both
            ends), always tracked online (needs ``frame_step = 1``).
        sub_points: points per patch side ``U``; when given, the hook also adds
            ``subpatch_tracks`` float32 ``[T, N*U^2, 2]`` and ``subpatch_visible`` bool
            ``[T, N*U^2]``, the ``U x U`` sub-patch centres of every patch of frame 0
            (:func:`~motionmae.motion.protocol.patch_grid_queries`, patch-major) tracked in
            the same call as the query grid (or read from the cache).

    Picklable; the tracker is built lazily in each worker process.
    """

    needs_dense_frames = False

    def __init__(self, patch: int, tracker: str = "lk", cache: TrackCache | None = None,
                 tracker_settings: dict[str, Any] | None = None,
                 decode_size: int | None = None,
                 min_visible_weight: float | None = None,
                 grid: str = "patch_centres", frame_step: int = 1,
                 windows: tuple[Sequence[int], Sequence[int]] | None = None,
                 sub_points: int | None = None) -> None:
        check_grid_settings(patch, grid, frame_step)
        if sub_points is not None and sub_points < 1:
            raise ValueError(f"TracksHook: sub_points must be >= 1, got {sub_points}")
        self.sub_points = sub_points
        if windows is not None:
            starts, ends = windows
            if frame_step != 1 or len(starts) != len(ends) or any(
                    not 0 <= s < e for s, e in zip(starts, ends, strict=True)):
                raise ValueError(f"TracksHook: windows {windows} need frame_step 1 (got "
                                 f"{frame_step}) and starts before ends, as many of each")
            windows = (tuple(int(s) for s in starts), tuple(int(e) for e in ends))
        self.windows = windows
        self.patch = patch
        self.grid = grid
        self.frame_step = frame_step
        self.tracker = tracker
        self.tracker_settings = dict(tracker_settings or {})
        self.cache = cache
        # Validates the name and settings now, without building the tracker (CoTracker
        # would load its checkpoint in the main process).
        ours = CacheSettings(tracker=tracker, tracker_settings=self.tracker_settings,
                             frame_step=frame_step)
        if cache is not None and (ours.tracker, ours.tracker_settings, ours.frame_step) != (
                cache.settings.tracker, cache.settings.tracker_settings,
                cache.settings.frame_step):
            raise ValueError(
                f"TracksHook: tracker {tracker!r} {ours.tracker_settings} every "
                f"{frame_step} frame(s) differs from the cache's {cache.settings.tracker!r} "
                f"{cache.settings.tracker_settings} every {cache.settings.frame_step}: "
                "cached and online tracks would come from different trackers")
        self.min_visible_weight = min_visible_weight
        self.decode_size = decode_size or (cache.settings.decode_size if cache else None)
        self.stats = HookStats()
        self._track: TrackCall | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_track"] = None  # rebuilt in the worker
        return state

    def __repr__(self) -> str:
        return (f"TracksHook(patch={self.patch}, grid={self.grid!r}, "
                f"tracker={self.tracker!r}, frame_step={self.frame_step}, cache={self.cache!r}, "
                f"windows={self.windows}, sub_points={self.sub_points})")

    def _get_tracker(self) -> PointTracker:
        """A new tracker of the configured backend and settings."""
        return make_tracker(self.tracker, **dict(self.tracker_settings))

    def _online(self) -> TrackCall:
        """The online tracking call, made once per process: the tracker's own ``track`` when
        it sees every frame, :func:`~motionmae.motion.frame_step.track_every` around it
        otherwise (chosen here, not per sample)."""
        if self._track is None:
            tracker = self._get_tracker()
            self._track = (tracker.track if self.frame_step == 1 else
                           functools.partial(track_every, tracker, step=self.frame_step))
        return self._track

    # -- the hook --------------------------------------------------------------------------

    def __call__(self, sample: HookInput) -> dict[str, torch.Tensor]:
        frames = np.asarray(sample.frames)
        height, width = frames.shape[1:3]
        queries = query_grid(self.grid, height, width, self.patch)  # [N, 3] (t, x, y)
        grid_points = len(queries)
        if self.sub_points is not None:  # tracked with the grid, split after
            queries = np.concatenate([queries, patch_grid_queries(
                height, width, self.patch, self.sub_points)])
        result = self._from_cache(sample, queries[:, 1:]) if self.cache is not None else None
        if result is None:
            self.stats.online += 1
            tracks, visible = self._online()(frames, queries)
        else:
            self.stats.cached += 1
            tracks, visible = result
        tracks = np.ascontiguousarray(tracks, np.float32)
        visible = np.ascontiguousarray(visible, bool)
        out = {}
        if self.sub_points is not None:
            out["subpatch_tracks"] = torch.from_numpy(tracks[:, grid_points:].copy())
            out["subpatch_visible"] = torch.from_numpy(visible[:, grid_points:].copy())
            tracks, visible = tracks[:, :grid_points].copy(), visible[:, :grid_points].copy()
            queries = queries[:grid_points]
        out["tracks"] = torch.from_numpy(tracks)
        out["track_visible"] = torch.from_numpy(visible)
        if self.windows is not None:
            out.update(self._tubelet_motion(frames, queries))
        return out

    def _tubelet_motion(self, frames: np.ndarray, queries: np.ndarray) -> dict[str, torch.Tensor]:
        """``tubelet_motion [t, N, 2]`` and ``tubelet_motion_visible [t, N]``: the query grid
        seeded at each window's first frame, tracked over that window only."""
        assert self.windows is not None
        track = self._online()  # the tracker's own call: windows need frame_step 1
        starts, ends = self.windows
        motion = np.zeros((len(starts), len(queries), 2), np.float32)
        seen = np.zeros((len(starts), len(queries)), bool)
        for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
            tracks, visible = track(frames[start:end + 1], queries)  # queries in frame 0
            motion[k] = tracks[-1] - tracks[0]
            seen[k] = visible[-1] & visible[0]
        return {"tubelet_motion": torch.from_numpy(motion),
                "tubelet_motion_visible": torch.from_numpy(seen)}

    def _from_cache(self, sample: HookInput,
                    points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        assert self.cache is not None
        entry = self.cache.get(sample.entry.path)
        if entry is None:
            self.stats.no_entry += 1
            logger.debug("track cache miss (no entry): %s", sample.entry.path)
            return None
        match = entry.find_clip(sample.frame_indices)
        if match is None:
            self.stats.clip_not_cached += 1
            logger.debug("track cache miss (clip %s not cached): %s",
                         np.asarray(sample.frame_indices).tolist(), sample.entry.path)
            return None
        clip, rows = match
        out_hw = tuple(np.asarray(sample.frames).shape[1:3])
        return cached_tracks_for_geometry(entry, clip, rows, points, sample.geometry, out_hw,
                                          self.decode_size, self.min_visible_weight)


def cached_tracks_for_geometry(entry: CachedTracks, clip: int, rows: np.ndarray,
                               points: np.ndarray, geometry: Geometry, out_hw: tuple[int, int],
                               decode_size: int | None, min_visible_weight: float | None = None
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Tracks of clip-pixel query points from a cached clip, for one sample geometry.

    Args:
        entry: the video's cached tracks.
        clip, rows: the cached clip and its frames (``[T]``) making the sample's clip.
        points: ``[N, 2]`` (x, y) query positions in clip pixels at clip frame 0.
        geometry: the sample's crop box (in frames decoded at ``decode_size``), size, flip.
        out_hw: the clip's ``(height, width)``, pixels.
        decode_size: the dataset's decode short side (``None``: the cache's frame size).
        min_visible_weight: see :func:`~motionmae.motion.grid_tracks.interpolate_grid_tracks`.

    Returns:
        ``(tracks [T, N, 2] float32 clip pixels, visible [T, N] bool)``.
    """
    out_h, out_w = out_hw
    box = geometry.box
    cache_h, cache_w = entry.frame_size
    if decode_size is None:
        dec_h, dec_w = cache_h, cache_w
    else:
        dec_h, dec_w = output_size(entry.source_size[0], entry.source_size[1], decode_size)
    to_cache = np.array([cache_w / dec_w, cache_h / dec_h])
    # clip pixels -> decoded pixels (inverse of transform_points) -> cache pixels
    pts = np.asarray(points, np.float64).copy()
    if geometry.flip:
        pts[:, 0] = (out_w - 1) - pts[:, 0]
    decoded = (pts + 0.5) * np.array([box.width / out_w, box.height / out_h]) \
        - 0.5 + np.array([box.x, box.y])
    in_cache = (decoded + 0.5) * to_cache - 0.5
    tracks, visible = interpolate_grid_tracks(entry.tracks[clip][rows], entry.visible[clip][rows],
                                              entry.grid_x, entry.grid_y, in_cache,
                                              min_visible_weight)
    decoded_tracks = (tracks + 0.5) / to_cache - 0.5
    clip_tracks = transform_points(decoded_tracks, box, (out_h, out_w), geometry.flip)
    visible &= in_frame(clip_tracks, out_h, out_w)
    return clip_tracks.astype(np.float32), visible
