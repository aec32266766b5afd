"""The tracker registry: a point tracker is one module that registers its class with
:func:`register_tracker`, beside its config dataclass (``tracking.<name>``); build one by name
with :func:`make_tracker`, or track in one call with :func:`track`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from motionmae.motion.camera import CameraConfig
from motionmae.motion.protocol import BatchedTracker, PointTracker, validate_inputs
from motionmae.registry import Registry, RunCheck

__all__ = ["TRACKERS", "TrackerSpec", "make_tracker", "register_tracker", "track"]


@dataclass(frozen=True)
class TrackerSpec:
    """One registered tracker: ``build(config) -> PointTracker``. ``required``: settings a
    run must give (not null), each with the hint its error shows; ``check(section, run)``: its
    rules across the run config's sections, checked when a selected target or masking kind
    needs tracks (:data:`~motionmae.registry.RunCheck`); ``batched(config)``: its batched
    form with these settings (:class:`~motionmae.motion.protocol.BatchedTracker`, what
    ``tracking.where: step`` runs in the training step), or ``None`` when these settings have
    none (``batched`` itself ``None``: the tracker has none)."""

    name: str
    config: type
    build: Callable[[Any], PointTracker]
    required: dict[str, str] = field(default_factory=dict)
    check: RunCheck | None = None
    batched: Callable[[Any], BatchedTracker | None] | None = None

    def batched_form(self, config: Any) -> BatchedTracker | None:
        """The batched form of this tracker with the settings ``config``, or ``None``."""
        return None if self.batched is None else self.batched(config)


TRACKERS: Registry[TrackerSpec] = Registry("tracker", "tracking.tracker")


def register_tracker(name: str, config: type, *, required: dict[str, str] | None = None,
                     check: RunCheck | None = None,
                     batched: Callable[[Any], BatchedTracker | None] | None = None
                     ) -> Callable[[type], type]:
    """Register the decorated tracker class (built as ``cls(config)``) as ``name``::

        @register_tracker("still", StillConfig)
        class StillTracker:
            def __init__(self, config: StillConfig) -> None: ...
            def track(self, frames, queries): ...
    """

    def decorate(cls: type) -> type:
        TRACKERS.add(TrackerSpec(name, config, cls, dict(required or {}), check, batched))
        return cls

    return decorate


def make_tracker(name: str, **settings: Any) -> PointTracker:
    """Build a point tracker by name.

    Args:
        name: a registered tracker: ``"lk"`` (pyramidal Lucas-Kanade, the default
            elsewhere), ``"flow"`` (chained dense optical flow), ``"cotracker"`` (CoTracker3
            adapter; needs a checkpoint) or one registered with :func:`register_tracker`.
        **settings: fields of the backend's config dataclass (:class:`LKConfig`,
            :class:`FlowConfig`, :class:`CoTrackerConfig`), e.g.
            ``make_tracker("flow", method="farneback", camera_compensation=True)``; or a
            ready config as ``config=...``. ``FlowConfig.camera`` may be given as a dict.

    Returns:
        A :class:`PointTracker`: ``track(frames [T,H,W,3] uint8, queries [N,3] (t, x, y))`` ->
        ``(tracks [T,N,2] float32 pixels, visible [T,N] bool)``.

    Raises:
        ValueError: unknown name (listing the valid ones) or unknown / invalid setting.
    """
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; valid names: {', '.join(TRACKERS.names())}")
    spec = TRACKERS.get(name)
    config_cls, tracker_cls = spec.config, spec.build
    config = settings.pop("config", None)
    if config is not None:
        if settings:
            raise ValueError(f"tracker {name!r}: pass either config=... or settings, not both "
                             f"(got config and {sorted(settings)})")
        if not isinstance(config, config_cls):
            raise ValueError(f"tracker {name!r}: config must be a {config_cls.__name__}, "
                             f"got {type(config).__name__}")
        return tracker_cls(config)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ValueError(f"tracker {name!r}: unknown setting(s) {unknown}; valid settings of "
                         f"{config_cls.__name__}: {sorted(fields)}")
    if isinstance(settings.get("camera"), dict):
        settings["camera"] = CameraConfig(**settings["camera"])
    return tracker_cls(config_cls(**settings))


def track(frames: np.ndarray, queries: np.ndarray, tracker: str | PointTracker = "lk",
          **settings: Any) -> tuple[np.ndarray, np.ndarray]:
    """Track points through a clip in one call.

    Args:
        frames: ``[T, H, W, 3]`` ``uint8`` RGB.
        queries: ``[N, 3]`` ``float32`` rows ``(t, x, y)``: query frame index and pixel position
            (pixel centres at integer coordinates, ``x = 0`` the centre of the first column).
        tracker: a backend name for :func:`make_tracker` (default ``"lk"``) or a ready
            :class:`PointTracker` (then ``settings`` must be empty).
        **settings: backend settings, see :func:`make_tracker`.

    Returns:
        ``(tracks [T, N, 2] float32 (x, y) pixels, visible [T, N] bool)``; every point is
        tracked forwards and backwards from its query frame; with one frame (``T = 1``) the
        tracks are the query positions, all visible. A tracker built here is not
        cached: for many clips build one with :func:`make_tracker` and reuse it.
    """
    if isinstance(tracker, str):
        tracker = make_tracker(tracker, **settings)
    elif settings:
        raise ValueError(f"settings {sorted(settings)} given with a ready tracker instance; "
                         f"pass them to make_tracker instead")
    if isinstance(frames, np.ndarray) and frames.ndim == 4 and len(frames) == 1:
        # One frame (a valid 1-frame video): every point is where it was queried, visible.
        # Answered here so that no backend needs a special case (flow needs two frames).
        frames, q = validate_inputs(frames, queries)
        return q[None, :, 1:].copy(), np.ones((1, len(q)), bool)
    return tracker.track(frames, queries)
