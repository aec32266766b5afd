"""extract_tracks: fills the cache, resumes, shards, reports bad videos, runs in a pool."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from motionmae.cache import ClipLayout, shard_videos
from motionmae.data.video_writer import write_video
from motionmae.motion import CacheSettings, TrackCache, extract_tracks, make_tracker
from motionmae.motion.extract import track_video
from motionmae.motion.synthetic import translation_clip

SETTINGS = CacheSettings(decode_size=96, layout=ClipLayout(frames=4, stride=2, clips=2),
                         grid_spacing=16)
VELOCITIES = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.5)]


@pytest.fixture(scope="module")
def videos(bunny: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small translating clips (14 frames, 128 x 96) and a text file named .mp4."""
    folder = tmp_path_factory.mktemp("videos")
    paths = []
    for i, velocity in enumerate(VELOCITIES):
        path = folder / f"clip{i}.mp4"
        write_video(path, translation_clip(bunny, 14, (96, 128), velocity).frames)
        paths.append(path)
    bad = folder / "bad.mp4"
    bad.write_text("this is not a video\n")
    return [*paths[:2], bad, paths[2]]


def test_track_video_layout_and_motion(videos: list[Path]) -> None:
    entry = track_video(videos[0], SETTINGS)
    np.testing.assert_array_equal(entry.frame_indices, SETTINGS.layout.indices(14))
    assert entry.frame_size == (96, 128) and entry.source_size == (96, 128)
    assert entry.grid_x[0] == 0 and entry.grid_x[-1] == 127 and entry.grid_y[-1] == 95
    n = len(entry.grid_x) * len(entry.grid_y)
    assert entry.tracks.shape == (2, 4, n, 2) and entry.visible.shape == (2, 4, n)
    seen = entry.visible[:, -1]
    moved = (entry.tracks[:, -1] - entry.tracks[:, 0])[seen].mean(0)
    np.testing.assert_allclose(moved, [6.0, 0.0], atol=0.3)  # 1 px/frame over 6 frames


def test_track_video_gives_the_tracker_every_frame_step_th_frame(videos: list[Path]) -> None:
    given = []

    class Recording:
        def __init__(self) -> None:
            self.lk = make_tracker("lk")

        def track(self, frames, queries):
            given.append(len(frames))
            return self.lk.track(frames, queries)

    settings = CacheSettings.from_any({**SETTINGS.to_dict(), "frame_step": 2})
    entry = track_video(videos[0], settings, Recording())
    assert given == [2, 2]  # frames 0 and 2 of each 4-frame cached clip
    moved = entry.tracks[:, 2] - entry.tracks[:, 0]  # 2 clip frames = 4 source frames
    np.testing.assert_allclose(moved[entry.visible[:, 2]].mean(0), [4.0, 0.0], atol=0.3)
    np.testing.assert_allclose(entry.tracks[:, 1], (entry.tracks[:, 0] + entry.tracks[:, 2]) / 2,
                               atol=1e-4)


def test_extract_reports_bad_videos_and_resumes(videos: list[Path], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    progress: list[tuple[int, int, str]] = []
    with caplog.at_level(logging.WARNING):
        stats = extract_tracks(videos, cache,
                               on_progress=lambda i, n, p, s: progress.append((i, n, s)))
    assert (stats.done, stats.skipped_existing) == (3, 0)
    assert [p for p, _ in stats.failed] == [videos[2]]
    assert "cannot be opened as media" in stats.failed[0][1]
    assert "bad.mp4" in caplog.text
    assert [i for i, _, _ in progress] == [1, 2, 3, 4] and progress[0][1] == 4
    assert all(cache.get(v) is not None for v in videos if v != videos[2])
    again = extract_tracks(videos, cache)
    assert (again.done, again.skipped_existing, len(again.failed)) == (0, 3, 1)


def test_corrupt_entry_is_recomputed(videos: list[Path], tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    good = [v for v in videos if v.name != "bad.mp4"]
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    extract_tracks(good, cache)
    shard = cache.shard_path(cache.key(good[1]))
    shard.write_bytes(shard.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        stats = extract_tracks(good, cache)
    assert (stats.done, stats.skipped_existing) == (1, 2)
    assert str(shard) in caplog.text
    assert cache.get(good[1]) is not None


def test_shards_partition_the_list(videos: list[Path], tmp_path: Path) -> None:
    names = [Path(f"v{i}.mp4") for i in range(7)]
    parts = [shard_videos(names, (k, 3)) for k in range(3)]
    assert parts[1] == [Path("v1.mp4"), Path("v4.mp4")]
    assert sorted(p for part in parts for p in part) == sorted(names)
    with pytest.raises(ValueError, match="shard"):
        shard_videos(names, (3, 3))
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    stats = extract_tracks(videos, cache, shard=(1, 2))  # videos 1 and 3
    assert (stats.done, stats.failed) == (2, [])
    assert [cache.contains(v) for v in videos] == [False, True, False, True]


def test_pool_of_workers(videos: list[Path], tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    stats = extract_tracks(videos, cache, workers=2)
    assert (stats.done, stats.skipped_existing) == (3, 0)
    assert [p for p, _ in stats.failed] == [videos[2]]
    inline = track_video(videos[3], SETTINGS)
    pooled = cache.get(videos[3])
    np.testing.assert_allclose(pooled.tracks, inline.tracks, atol=1 / 64)
    np.testing.assert_array_equal(pooled.visible, inline.visible)
