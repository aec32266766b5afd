"""Does a run's track cache hold tracks for the run? Checked once, before training.

A cache made with other settings than the run's (another ``data.size``, ``data.stride``,
tracker setting, ...) is not stale (keys cover every setting) but misses on every clip: the
run then tracks every clip online, at a fraction of the speed the cache was made for, and
still draws its clips only where the cache's clips start (``cache.path``'s contract), a
fraction of each video. Nothing in the targets shows it, so a cache that holds none of the
run's videos while it holds tracks made with other settings is refused, naming the settings
that differ; a cache that holds some of them, or nothing yet, is reported in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from motionmae.errors import UsageError
from motionmae.motion.cache import TrackCache, recorded_settings

logger = logging.getLogger(__name__)

# CacheSettings.to_dict()'s fields as the run's config names them.
RUN_KEYS = {"tracker": "tracking.tracker", "decode_size": "data.size", "frames": "data.frames",
            "stride": "data.stride", "cache_clips": "cache.clips",
            "frame_step": "tracking.frame_step", "grid_spacing": "grid_spacing"}
DEFAULTS = {"frame_step": 1}  # fields to_dict() leaves out at this value
CHECKED_VIDEOS = 256


def setting_differences(run: Mapping[str, Any], cached: Mapping[str, Any]) -> list[str]:
    """``"KEY: cache V, run W"`` for every setting of ``cached`` that ``run`` does not share
    (both in :meth:`CacheSettings.to_dict` form), under the run's config keys."""
    differences = []
    for field in sorted(set(run) | set(cached)):
        if field == "tracker_settings":
            continue
        mine, theirs = run.get(field, DEFAULTS.get(field)), cached.get(field, DEFAULTS.get(field))
        if mine != theirs:
            differences.append(f"{RUN_KEYS.get(field, field)}: cache {theirs}, run {mine}")
    if run.get("tracker") == cached.get("tracker"):
        prefix = f"tracking.{run.get('tracker')}"
        mine, theirs = run.get("tracker_settings", {}), cached.get("tracker_settings", {})
        differences += [f"{prefix}.{name}: cache {theirs.get(name)}, run {mine.get(name)}"
                        for name in sorted(set(mine) | set(theirs))
                        if mine.get(name) != theirs.get(name)]
    return differences


def checked_videos(videos: Sequence[str | Path], limit: int = CHECKED_VIDEOS) -> list[str | Path]:
    """At most ``limit`` videos spread evenly over the list (a stat and a key each)."""
    if len(videos) <= limit:
        return list(videos)
    return [videos[i] for i in np.linspace(0, len(videos) - 1, limit).round().astype(int)]


def check_cache_coverage(cache: TrackCache, videos: Sequence[str | Path],
                         limit: int = CHECKED_VIDEOS) -> int:
    """How many of (up to ``limit`` of) ``videos`` have an entry in ``cache``; raises
    :class:`~motionmae.errors.UsageError` when none has one while the folder holds entries
    made with other settings (the message names the settings that differ from the nearest
    recorded ones); logs a warning when only some have one or the folder holds nothing."""
    sample = checked_videos(videos, limit)
    covered = sum(cache.contains(video) for video in sample)
    root = cache.root
    if covered == len(sample):
        logger.info("track cache %s holds tracks of all %d videos checked", root, covered)
        return covered
    if covered:
        logger.warning("track cache %s holds tracks of %d of %d videos checked: the rest are "
                       "tracked online", root, covered, len(sample))
        return covered
    run = cache.settings.to_dict()
    others = [s for s in recorded_settings(root).values() if isinstance(s, dict) and s != run]
    if not others:
        logger.warning("track cache %s holds no tracks yet: every clip is tracked online until "
                       "motionmae extract-tracks fills it", root)
        return 0
    nearest = min((setting_differences(run, s) for s in others), key=len)
    raise UsageError(
        f"cache.path: {root} holds no tracks made with this run's settings (0 of "
        f"{len(sample)} videos checked), only tracks made with others; nearest: "
        f"{'; '.join(nearest)}. Extract tracks with the run's settings (motionmae "
        f"extract-tracks with this run's --config and its flags as --set, e.g. --set "
        f"data.size=...: it has no --frames or --size), run with the cache's, or set "
        f"cache.path=null to track every clip online")
