"""A run whose track cache was made with other settings is refused before it trains: such a
cache misses on every clip, so the run would track every clip online while drawing clips
only where the cache's start."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motionmae.cache import ClipLayout
from motionmae.errors import UsageError
from motionmae.motion.cache import CacheSettings, TrackCache, recorded_settings
from motionmae.motion.cache_check import check_cache_coverage, checked_videos, setting_differences
from motionmae.motion.cached_tracks import CachedTracks

SETTINGS = CacheSettings(decode_size=64, layout=ClipLayout(frames=4, stride=2, clips=1))


def one_entry() -> CachedTracks:
    xs = ys = np.arange(0.0, 64.0, 8.0)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32)
    indices = ClipLayout(4, 2, 1).indices(40)
    return CachedTracks(clip_starts=indices[:, 0].copy(), frame_indices=indices, grid_x=xs,
                        grid_y=ys, grid_spacing=8.0, tracks=np.broadcast_to(
                            grid, (1, 4, len(grid), 2)).copy(),
                        visible=np.ones((1, 4, len(grid)), bool), frame_size=(64, 64),
                        source_size=(64, 64))


def videos(root: Path, count: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"v{i}.mp4" for i in range(count)]
    for path in paths:
        path.write_bytes(b"only stat'ed by the cache")
    return paths


def test_differences_are_named_by_the_run_keys():
    other = CacheSettings(decode_size=96, tracker_settings={"window": 9},
                          layout=ClipLayout(frames=4, stride=4, clips=1), frame_step=2)
    assert setting_differences(SETTINGS.to_dict(), other.to_dict()) == [
        "data.size: cache 96, run 64", "tracking.frame_step: cache 2, run 1",
        "data.stride: cache 4, run 2", "tracking.lk.window: cache 9, run 13"]
    assert setting_differences(SETTINGS.to_dict(), SETTINGS.to_dict()) == []
    flow = CacheSettings(tracker="flow", decode_size=64, layout=SETTINGS.layout)
    assert setting_differences(SETTINGS.to_dict(), flow.to_dict()) == [
        "tracking.tracker: cache flow, run lk"]  # another tracker's settings are not compared


def test_a_cache_of_other_settings_is_refused_naming_them(tmp_path):
    paths = videos(tmp_path / "videos", 3)
    made = TrackCache(tmp_path / "cache", CacheSettings(
        decode_size=96, layout=SETTINGS.layout))
    for path in paths:
        made.put(path, one_entry())
    assert list(recorded_settings(tmp_path / "cache").values()) == [made.settings.to_dict()]
    run = TrackCache(tmp_path / "cache", SETTINGS)
    with pytest.raises(UsageError) as error:
        check_cache_coverage(run, paths)
    message = str(error.value)
    assert message.startswith("cache.path: ")
    assert "0 of 3 videos checked" in message
    assert "data.size: cache 96, run 64" in message
    assert "cache.path=null" in message
    # extract-tracks takes the settings as --config and --set (no --frames or --size flags).
    assert "extract-tracks with this run's --config and its flags as --set" in message
    # The cache's own settings find every video.
    assert check_cache_coverage(made, paths) == 3


def test_a_partial_or_empty_cache_is_reported_not_refused(tmp_path, caplog):
    paths = videos(tmp_path / "videos", 4)
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    with caplog.at_level(logging.WARNING, logger="motionmae.motion.cache_check"):
        assert check_cache_coverage(cache, paths) == 0
    assert "holds no tracks yet" in caplog.text
    cache.put(paths[0], one_entry())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="motionmae.motion.cache_check"):
        assert check_cache_coverage(cache, paths) == 1
    assert "1 of 4 videos checked" in caplog.text
    # Entries of other settings beside some of the run's: partial, still not refused.
    TrackCache(tmp_path / "cache", CacheSettings(decode_size=32, layout=SETTINGS.layout)).put(
        paths[1], one_entry())
    assert check_cache_coverage(cache, paths) == 1


def test_a_long_list_is_checked_on_an_even_sample():
    assert checked_videos(list(range(10)), limit=20) == list(range(10))
    sample = checked_videos(list(range(1000)), limit=5)
    assert sample == [0, 250, 500, 749, 999]


def test_pretrain_refuses_a_cache_made_for_another_size(tmp_path):
    from motionmae.data import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "videos", num_train=3, num_val=1, frames=8,
                                  size=32, seed=1)
    common = ["--set", "data.frames=4", "--set", "data.stride=2", "--set", "cache.clips=1"]
    extract = subprocess.run(
        [sys.executable, "-m", "motionmae", "extract-tracks", "--data", str(data.train_list),
         "--cache", str(tmp_path / "cache"), "--set", "data.size=32", *common],
        capture_output=True, text=True, timeout=300)
    assert extract.returncode == 0, extract.stderr[-2000:]
    run = subprocess.run(
        [sys.executable, "-m", "motionmae", "pretrain", "--data", str(data.train_list),
         "--out", str(tmp_path / "run"), "--model", "tiny", "--size", "48", "--frames", "4",
         "--targets", "pixel,tracks", "--steps", "2", "--batch-size", "2",
         "--set", "data.stride=2", "--set", "cache.clips=1",
         "--set", f"cache.path={tmp_path / 'cache'}"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("motionmae pretrain: error: cache.path: "), last
    assert "data.size: cache 32, run 48" in last
    assert not (tmp_path / "run" / "checkpoints").exists()
