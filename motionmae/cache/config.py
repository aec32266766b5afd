"""The ``cache`` section: the offline cache folder a run reads, and which clips it holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from motionmae.cache.layout import ClipLayout
from motionmae.config_loading import check

if TYPE_CHECKING:  # importing motionmae.data at run time would load torch
    from motionmae.data.config import DataConfig


@dataclass
class CacheConfig:
    """The offline cache of point tracks and teacher features (``motionmae extract-tracks``,
    ``motionmae extract-teacher``).

    ``path``: the cache folder a run reads (null: everything is computed online). With a
    folder, training clips start only where the cache holds clips (crop and flip stay fully
    random) and a miss falls back to the online computation. A track cache that holds none
    of the run's videos under the run's settings, only under others, is refused before
    training, naming the settings that differ (:mod:`motionmae.motion.cache_check`): it
    would miss on every clip. ``clips``: evenly spaced clips
    cached per video (:class:`~motionmae.cache.layout.ClipLayout`); part of the track cache's
    key, so extraction and training must name the same number.

    Configs saved before this section existed said ``tracking.cache`` and
    ``tracking.cache_clips``; they still load (:data:`motionmae.config.PretrainConfig.
    LEGACY_KEYS`).
    """

    path: str | None = None
    clips: int = 4

    def validate(self, key: str = "cache") -> None:
        check(self.clips >= 1, f"{key}.clips", f"must be >= 1, got {self.clips}")

    def layout(self, data: DataConfig) -> ClipLayout:
        """The clips the cache holds for clips of ``data``, and training draws from it."""
        return ClipLayout(frames=data.frames, stride=data.stride, clips=self.clips)
