"""Point tracking for motion-aware masked video modeling.

All backends follow :class:`PointTracker`: ``track(frames [T,H,W,3] uint8 RGB, queries [N,3]
float32 (t, x, y) pixels) -> (tracks [T,N,2] float32 (x, y) pixels, visible [T,N] bool)``,
with pixel centres at integer coordinates and every query tracked forwards and backwards from
its query frame. Backends: ``"lk"`` (default; pyramidal Lucas-Kanade), ``"torch_lk"`` (the
same algorithm in PyTorch, also for a batch of clips on a GPU: :func:`track_lk_batched`),
``"flow"`` (chained dense DIS/Farneback flow, optional camera-motion compensation) and
``"cotracker"`` (CoTracker3 adapter; bring your own code base and checkpoint).

>>> tracks, visible = track(frames, grid_queries(224, 224, 14))  # doctest: +SKIP

Training-time tracks: :class:`TracksHook` (a data sample hook) tracks one point per patch
(:func:`query_grid`: the patch centres or CoTracker's grid) of each augmented clip online, or
interpolates them from the offline :class:`TrackCache` (dense-grid tracks of ``cache.clips``
clips per video, filled by :func:`extract_tracks`; training clips are then drawn from those,
:class:`motionmae.cache.ClipLayout`); or, with ``tracking.where: step``,
:class:`~motionmae.motion.step_tracks.StepTracks` tracks the whole micro-batch inside the
training step on the model's device, with the tracker's batched form.
"""

from typing import TYPE_CHECKING, Any

from motionmae.motion.cache import CacheSettings, TrackCache
from motionmae.motion.cached_tracks import CachedTracks
from motionmae.motion.camera import (
    CameraConfig,
    cumulative_homographies,
    estimate_camera_motion,
    estimate_homography,
)
from motionmae.motion.cotracker import CoTrackerConfig, CoTrackerTracker
from motionmae.motion.flow import (
    FlowConfig,
    FlowTracker,
    chain_dense_grid,
    chain_flow,
    dense_flow,
    track_flow,
)
from motionmae.motion.lk import LKConfig, LKTracker, track_lk
from motionmae.motion.metrics import (
    average_jaccard,
    delta_avg,
    median_epe,
    occlusion_accuracy,
    tapvid_metrics,
)
from motionmae.motion.protocol import (
    PointTracker,
    cotracker_grid_queries,
    grid_queries,
    patch_center_queries,
    patch_grid_queries,
    query_grid,
    validate_inputs,
)
from motionmae.motion.registry import TRACKERS, TrackerSpec, make_tracker, register_tracker, track
from motionmae.motion.torch_lk import TorchLKConfig, TorchLKTracker

if TYPE_CHECKING:
    from motionmae.motion.batched_tracker import track_lk_batched
    from motionmae.motion.extract import extract_tracks
    from motionmae.motion.hooks import TracksHook

# Lazy: these import torch / the data package; ``import motionmae.motion`` stays light.
_LAZY = {"TracksHook": "hooks", "extract_tracks": "extract",
         "track_lk_batched": "batched_tracker"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TRACKERS",
    "CacheSettings",
    "CachedTracks",
    "CameraConfig",
    "CoTrackerConfig",
    "CoTrackerTracker",
    "FlowConfig",
    "FlowTracker",
    "LKConfig",
    "LKTracker",
    "PointTracker",
    "TorchLKConfig",
    "TorchLKTracker",
    "TrackCache",
    "TrackerSpec",
    "TracksHook",
    "average_jaccard",
    "chain_dense_grid",
    "chain_flow",
    "cotracker_grid_queries",
    "cumulative_homographies",
    "delta_avg",
    "dense_flow",
    "estimate_camera_motion",
    "estimate_homography",
    "extract_tracks",
    "grid_queries",
    "make_tracker",
    "median_epe",
    "occlusion_accuracy",
    "patch_center_queries",
    "patch_grid_queries",
    "query_grid",
    "register_tracker",
    "tapvid_metrics",
    "track",
    "track_flow",
    "track_lk",
    "track_lk_batched",
    "validate_inputs",
]
