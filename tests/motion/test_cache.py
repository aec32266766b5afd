"""The track cache: keys, clip layout, grid interpolation, storage, corruption, concurrency."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from motionmae.cache import ClipLayout
from motionmae.motion.cache import CacheSettings, TrackCache
from motionmae.motion.cached_tracks import CachedTracks
from motionmae.motion.grid_tracks import dense_grid, interpolate_grid_tracks

SETTINGS = CacheSettings(decode_size=64, layout=ClipLayout(frames=4, stride=2, clips=3),
                         grid_spacing=8)


def fake_entry(seed: int = 0, clips: int = 3, frames: int = 4,
               size: tuple[int, int] = (64, 80)) -> CachedTracks:
    """Tracks of a translating grid with a few invisible points (no video needed)."""
    rng = np.random.default_rng(seed)
    xs, ys = dense_grid(*size, 8.0)
    q = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    steps = np.arange(frames)[None, :, None, None] * rng.normal(0, 2, (clips, 1, 1, 2))
    tracks = (q[None, None] + steps + rng.normal(0, 0.1, (clips, frames, len(q), 2)))
    tracks[:, 0] = q
    visible = rng.random((clips, frames, len(q))) > 0.1
    visible[:, 0] = True
    indices = ClipLayout(frames, 2, clips).indices(40)
    return CachedTracks(clip_starts=indices[:, 0].copy(), frame_indices=indices, grid_x=xs,
                        grid_y=ys, grid_spacing=8.0, tracks=tracks.astype(np.float32),
                        visible=visible, frame_size=size, source_size=(144, 180))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded by the cache, only stat'ed")
    return path


def test_find_clip_matches_start_and_subsets() -> None:
    entry = fake_entry()
    row = entry.frame_indices[1]
    c, rows = entry.find_clip(row)
    assert c == 1 and rows.tolist() == [0, 1, 2, 3]
    c, rows = entry.find_clip(row[::2])  # twice the stride, same start
    assert c == 1 and rows.tolist() == [0, 2]
    assert entry.find_clip(row + 1) is None  # another start: not cached
    assert entry.find_clip(np.array([row[0], row[1] + 1])) is None


# -- interpolation --------------------------------------------------------------------------


def test_interpolation_is_exact_for_affine_motion() -> None:
    xs, ys = dense_grid(48, 64, 8.0)
    q = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float64)
    a = np.array([[1.02, 0.05], [-0.03, 0.98]])
    tracks = np.stack([q, q @ a.T + [3.0, -2.0]])
    visible = np.ones(tracks.shape[:2], bool)
    pts = np.array([[5.3, 7.7], [31.5, 20.25], [63.0, 47.0], [0.0, 0.0]])
    out, vis = interpolate_grid_tracks(tracks, visible, xs, ys, pts)
    np.testing.assert_allclose(out[0], pts, atol=1e-9)
    np.testing.assert_allclose(out[1], pts @ a.T + [3.0, -2.0], atol=1e-9)
    assert vis.all()


def test_interpolation_visibility_rules() -> None:
    xs, ys = dense_grid(17, 17, 8.0)  # 3 x 3 grid at 0, 8, 16
    q = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    tracks = q[None].astype(np.float64)
    visible = np.ones((1, 9), bool)
    visible[0, 0] = False  # grid point (0, 0)
    pts = np.array([[2.0, 2.0], [6.0, 6.0], [12.0, 12.0], [-0.4, 4.0], [4.0, 16.3]])
    _, vis = interpolate_grid_tracks(tracks, visible, xs, ys, pts)
    # any of the 4 neighbours invisible -> invisible; outside the hull -> invisible
    assert vis[0].tolist() == [False, False, True, False, False]
    _, vis = interpolate_grid_tracks(tracks, visible, xs, ys, pts, min_visible_weight=0.5)
    assert vis[0].tolist() == [False, True, True, False, False]  # (0,0) weighs 0.56 vs 0.06


# -- settings and keys ----------------------------------------------------------------------


def test_settings_fill_tracker_defaults_and_reject_unknown() -> None:
    assert SETTINGS.tracker_settings["window"] == 13  # LKConfig default, part of the key
    assert CacheSettings(tracker_settings={"window": 13}) == CacheSettings()
    with pytest.raises(ValueError, match="unknown setting"):
        CacheSettings(tracker_settings={"windw": 13})
    with pytest.raises(ValueError, match="unknown key"):
        CacheSettings.from_any({"frame": 8})
    assert CacheSettings.from_any(SETTINGS.to_dict()) == SETTINGS


def test_key_changes_with_mtime_and_every_setting(video: Path, tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    key = cache.key(video)
    assert cache.key(video) == key
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched
    assert cache.key(video) != key
    base = cache.key(video)
    changes = [{"tracker": "flow", "tracker_settings": {}}, {"tracker_settings": {"window": 15}},
               {"decode_size": 96}, {"frames": 8}, {"stride": 3}, {"cache_clips": 2},
               {"grid_spacing": 4.0}, {"frame_step": 2}]
    keys = {TrackCache(tmp_path / "cache", {**SETTINGS.to_dict(), **change}).key(video)
            for change in changes}
    assert len(keys) == len(changes) and base not in keys


def test_frame_step_keys_only_caches_that_step_so_older_keys_stay_valid() -> None:
    # Caches filled before tracking.frame_step existed tracked every frame: same key as 1.
    assert "frame_step" not in SETTINGS.to_dict()
    stepped = CacheSettings.from_any({**SETTINGS.to_dict(), "frame_step": 2})
    assert stepped.to_dict()["frame_step"] == 2 and stepped.fingerprint() != SETTINGS.fingerprint()
    assert CacheSettings.from_any(stepped.to_dict()) == stepped
    with pytest.raises(ValueError, match=r"CacheSettings\.frame_step: must be an integer >= 1"):
        CacheSettings(frame_step=0)


def test_touched_video_is_a_miss(video: Path, tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    cache.put(video, fake_entry())
    assert cache.contains(video) and cache.get(video) is not None
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert not cache.contains(video) and cache.get(video) is None
    assert cache.get(tmp_path / "missing.mp4") is None


# -- storage --------------------------------------------------------------------------------


def test_round_trip_layout_and_precision(video: Path, tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    entry = fake_entry()
    shard = cache.put(video, entry)
    key = cache.key(video)
    assert shard == tmp_path / "cache" / key[:2] / f"{key}.npz"
    assert [p.name for p in shard.parent.iterdir()] == [shard.name]  # no temp file left
    with np.load(shard, allow_pickle=False) as data:
        assert data["offsets"].dtype == np.float16
        assert data["visible_packed"].dtype == np.uint8
    got = cache.get(video)
    assert got is not None
    np.testing.assert_array_equal(got.visible, entry.visible)
    np.testing.assert_array_equal(got.frame_indices, entry.frame_indices)
    np.testing.assert_allclose(got.tracks, entry.tracks, atol=1 / 64)  # float16 offsets
    assert got.frame_size == (64, 80) and got.source_size == (144, 180)
    described = (tmp_path / "cache" / "settings.json").read_text()
    assert SETTINGS.fingerprint() in described and '"grid_spacing": 8.0' in described


def test_cache_pickles(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path, SETTINGS)
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.root == cache.root and clone.settings == cache.settings


def _damage_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage_tamper(path: Path) -> None:
    """A valid zip whose offsets were edited but whose checksum was not."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["offsets"] = arrays["offsets"] + np.float16(1)
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def _damage_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_flip, _damage_tamper,
                                    _damage_empty])
def test_corrupt_entry_is_reported_removed_and_missed(damage, video: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    shard = cache.put(video, fake_entry())
    damage(shard)
    with caplog.at_level(logging.WARNING, logger="motionmae.cache.shards"):
        assert cache.get(video) is None
    assert str(shard) in caplog.text and "corrupt" in caplog.text
    assert not shard.exists()
    cache.put(video, fake_entry())  # recomputed by the extractor
    assert cache.get(video) is not None


def test_entry_under_another_key_is_rejected(video: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    cache = TrackCache(tmp_path / "cache", SETTINGS)
    shard = cache.put(video, fake_entry())
    other = TrackCache(tmp_path / "cache", {**SETTINGS.to_dict(), "stride": 3})
    target = other.shard_path(other.key(video))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(shard.read_bytes())
    with caplog.at_level(logging.WARNING):
        assert other.get(video) is None
    assert "another key" in caplog.text


def _writer(root: str, video: str, seed: int, rounds: int) -> None:
    cache = TrackCache(root, SETTINGS)
    for _ in range(rounds):
        cache.put(video, fake_entry(seed))


def test_concurrent_writers_leave_a_valid_entry(video: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "cache"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_writer, args=(str(root), str(video), 7, 15))
               for _ in range(2)]
    cache = TrackCache(root, SETTINGS)
    seen = 0
    with caplog.at_level(logging.WARNING):
        for w in writers:
            w.start()
        while any(w.is_alive() for w in writers):  # a reader never sees a torn file
            seen += cache.get(video) is not None
        for w in writers:
            w.join()
    assert all(w.exitcode == 0 for w in writers)
    assert "corrupt" not in caplog.text
    got = cache.get(video)
    assert got is not None
    np.testing.assert_allclose(got.tracks, fake_entry(7).tracks, atol=1 / 64)
    shard_dir = cache.shard_path(cache.key(video)).parent
    assert len(list(shard_dir.iterdir())) == 1  # no temp files left behind
    zipfile.ZipFile(cache.shard_path(cache.key(video))).testzip()
