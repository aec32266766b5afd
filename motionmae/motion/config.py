"""The ``tracking`` section: which registered tracker makes the point tracks (motion targets,
motion-aware masking) and one sub-section per tracker with its own settings
(``tracking.flow.method``, ``tracking.cotracker.checkpoint``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from motionmae.config_loading import ComponentSections, check, to_dict
from motionmae.motion.protocol import QUERY_GRIDS, BatchedTracker
from motionmae.motion.registry import TRACKERS

# Where tracks are made: in the loader workers, in the training step, or decided by the run.
TRACKING_PLACES = ("auto", "workers", "step")

logger = logging.getLogger(__name__)


@dataclass(init=False, eq=False)
class TrackingConfig(ComponentSections):
    """Where point tracks come from.

    Tracks are computed in the data-loader workers on the very frames the model sees, or read
    from the track cache (``motionmae extract-tracks``) when the ``cache`` section names a
    folder (``cache.path``); cache misses fall back to online tracking.

    ``tracker: cotracker`` (:mod:`motionmae.motion.cotracker`) needs ``cotracker.checkpoint``,
    the local ``scaled_offline.pth`` (``scaled_online.pth`` with ``cotracker.variant:
    online``), and the CoTracker code base: installed, or a clone named by ``cotracker.code``.
    The tracker's settings, paths included, are part of the track cache's key:
    ``extract-tracks`` and training must name the same ones.

    ``grid``: where each patch's query point sits in clip frame 0: ``patch_centres``
    (default) or ``cotracker``, the ``grid_size = S / patch`` grid CoTracker's predictor lays
    out (evenly spaced with a margin of 1/64 of its model width: TrackMAE's official queries;
    :func:`~motionmae.motion.protocol.cotracker_grid_queries`). Cached tracks are read at
    either grid (the cache holds a dense grid), so it is not part of the cache's key.
    ``frame_step``: the tracker sees clip frames ``0, frame_step, 2 frame_step, ...`` only
    (TrackMAE's official ``[:, ::2]`` is 2; default 1, every frame); the frames between are
    filled in (:mod:`~motionmae.motion.frame_step`). Part of the cache's key.

    ``where``: where online tracking runs. ``workers``: per clip in the data-loader workers
    (:class:`~motionmae.motion.hooks.TracksHook`). ``step``: inside the training step, for
    the whole micro-batch at once on the model's device, by the tracker's batched form
    (:mod:`~motionmae.motion.step_tracks`; ``lk`` and ``torch_lk``, same algorithm and
    settings; the loader then ships the clips only). ``auto`` (default): ``step`` when the
    model runs on a GPU and the tracker has a batched form, else ``workers``; the run resolves
    it once (:meth:`resolved_where`) and saves the answer in ``RUN/config.yaml``. With a
    track cache (``cache.path``) tracks are read in the workers whatever ``where`` says.
    """

    REGISTRY = TRACKERS
    # Configs saved before the trackers had sections kept CoTracker's settings flat.
    LEGACY_KEYS: ClassVar[dict[str, str]] = {"cotracker_checkpoint": "cotracker.checkpoint",
                   "cotracker_variant": "cotracker.variant", "cotracker_code": "cotracker.code"}

    tracker: str = "lk"
    grid: str = "patch_centres"
    frame_step: int = 1
    where: str = "auto"

    def selected(self) -> list[str]:
        return [self.tracker]

    def tracker_settings(self) -> dict[str, Any]:
        """The settings of ``tracker`` for :func:`motionmae.motion.make_tracker` (also part
        of the track cache's key)."""
        return to_dict(getattr(self, self.tracker))

    def batched_tracker(self) -> BatchedTracker | None:
        """The batched form of ``tracker`` with its settings (what ``where: step`` runs), or
        ``None`` when it has none."""
        return TRACKERS.get(self.tracker).batched_form(getattr(self, self.tracker))

    def resolved_where(self, device_type: str, cached: bool,
                       workers_only: bool = False) -> str:
        """``where`` as a run uses it: ``workers`` or ``step``.

        Args:
            device_type: the model's device type (``cuda``, ``cpu``, ...).
            cached: a track cache is configured (``cache.path``): its tracks are read in the
                workers, so they win over ``step`` (said in a log line).
            workers_only: a target reads what only the workers' hook makes (its config
                refuses ``where: step``), so ``auto`` resolves to ``workers``.
        """
        if self.where == "workers" or workers_only:
            return "workers"
        if cached:
            if self.where == "step":
                logger.warning("tracking.where=step: cache.path is set, so tracks are read from "
                               "the track cache in the loader workers (misses tracked there); "
                               "running with tracking.where=workers")
            return "workers"
        if self.where == "step":
            return "step"
        return "step" if device_type == "cuda" and self.batched_tracker() is not None \
            else "workers"

    def validate(self, key: str = "tracking") -> None:
        check(self.tracker in TRACKERS, f"{key}.tracker",
              f"must be one of {TRACKERS.names()}, got {self.tracker!r}")
        check(self.grid in QUERY_GRIDS, f"{key}.grid",
              f"must be one of {list(QUERY_GRIDS)}, got {self.grid!r}")
        check(self.frame_step >= 1, f"{key}.frame_step", f"must be >= 1, got {self.frame_step}")
        check(self.where in TRACKING_PLACES, f"{key}.where",
              f"must be one of {list(TRACKING_PLACES)}, got {self.where!r}")
        self.validate_sections(key)
        section = getattr(self, self.tracker)
        for name, hint in TRACKERS.get(self.tracker).required.items():
            check(getattr(section, name) is not None, f"{key}.{self.tracker}.{name}",
                  f"{key}.tracker is {self.tracker}: {hint}")
        if self.where == "step":
            batched = [spec.name for spec in TRACKERS if spec.batched is not None]
            check(self.batched_tracker() is not None, f"{key}.where",
                  f"step tracks in the training step with the tracker's batched form, and "
                  f"{key}.tracker={self.tracker} has none with these settings (trackers "
                  f"with one, depending on their settings: {batched}); use "
                  f"{key}.where=workers or auto")
