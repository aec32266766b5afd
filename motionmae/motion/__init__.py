"""Point tracking for motion-aware masked video modeling.

All backends follow :class:`PointTracker`: ``track(frames [T,H,W,3] uint8 RGB, queries [N,3]
float32 (t, x, y) pixels) -> (tracks [T,N,2] float32 (x, y) pixels, visible [T,N] bool)``,
with pixel centres at integer coordinates and every query tracked forwards and backwards from
its query frame. Backends: ``"lk"`` (default; pyramidal Lucas-Kanade), ``"flow"`` (chained
dense DIS/Farneback flow, optional camera-motion compensation) and ``"cotracker"``
(CoTracker3 adapter; bring your own code base and checkpoint).

>>> tracks, visible = track(frames, grid_queries(224, 224, 14))  # doctest: +SKIP
"""

from .camera import (
    CameraConfig,
    cumulative_homographies,
    estimate_camera_motion,
    estimate_homography,
)
from .cotracker import CoTrackerConfig, CoTrackerTracker
from .flow import FlowConfig, FlowTracker, chain_dense_grid, chain_flow, dense_flow, track_flow
from .lk import LKConfig, LKTracker, track_lk
from .metrics import average_jaccard, delta_avg, median_epe, occlusion_accuracy, tapvid_metrics
from .protocol import (
    PointTracker,
    grid_queries,
    patch_center_queries,
    patch_grid_queries,
    validate_inputs,
)
from .registry import TRACKERS, make_tracker, track

__all__ = [
    "TRACKERS",
    "CameraConfig",
    "CoTrackerConfig",
    "CoTrackerTracker",
    "FlowConfig",
    "FlowTracker",
    "LKConfig",
    "LKTracker",
    "PointTracker",
    "average_jaccard",
    "chain_dense_grid",
    "chain_flow",
    "cumulative_homographies",
    "delta_avg",
    "dense_flow",
    "estimate_camera_motion",
    "estimate_homography",
    "grid_queries",
    "make_tracker",
    "median_epe",
    "occlusion_accuracy",
    "patch_center_queries",
    "patch_grid_queries",
    "tapvid_metrics",
    "track",
    "track_flow",
    "track_lk",
    "validate_inputs",
]
