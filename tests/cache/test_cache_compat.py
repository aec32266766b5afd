"""Caches written before the cache package existed stay valid: the same keys, the same shards.

``fixtures/`` was written by the code before the change (its ``motionmae.motion.cache`` and
``motionmae.targets.teacher_cache``): ``recorded.json`` holds the settings records and
fingerprints of known settings and the keys of two shards, ``tracks_v1.npz`` and
``teacher_v1.npz`` (``tracks_v1_expected.npz``: the tracks stored in the first).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from motionmae.cache import ClipLayout, read_shard
from motionmae.motion.cache import CacheSettings, TrackCache
from motionmae.motion.cached_tracks import CachedTracks
from motionmae.targets.teacher_cache import (
    CachedFeatures,
    TeacherCacheSettings,
    TeacherFeatureCache,
)

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = json.loads((FIXTURES / "recorded.json").read_text())

KNOWN_SETTINGS = {
    "default": CacheSettings(),
    "small": CacheSettings(decode_size=64, layout=ClipLayout(frames=4, stride=2, clips=3),
                           grid_spacing=8),
    "flow_step2": CacheSettings(tracker="flow", frame_step=2, layout=ClipLayout(clips=2)),
}
TEACHER = TeacherCacheSettings(teacher="ab" * 32, model_type="dinov2", input_size=224,
                               tubelet=2, frame=0, precision="fp32", decode_size=32)


def sha256_of(record: dict) -> str:
    """The keys' hash, restated here so a change to the package's is caught."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("name", sorted(KNOWN_SETTINGS))
def test_track_settings_hash_as_before(name: str) -> None:
    settings, recorded = KNOWN_SETTINGS[name], RECORDED["track_settings"][name]
    assert settings.to_dict() == recorded["dict"], "a changed record invalidates every cache"
    assert settings.fingerprint() == recorded["fingerprint"]
    assert CacheSettings.from_any(recorded["dict"]) == settings


def test_keys_hash_the_video_and_settings_as_before(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x" * 100)
    os.utime(video, ns=(1_700_000_000_000_000_000,) * 2)
    stat = {"video": str(video.resolve()), "size": 100, "mtime_ns": 1_700_000_000_000_000_000}
    settings = KNOWN_SETTINGS["small"]
    assert TrackCache(tmp_path, settings).key(video) == sha256_of(
        {**stat, "settings": RECORDED["track_settings"]["small"]["dict"]})
    assert TEACHER.to_dict() == RECORDED["teacher_settings"]
    frames = np.array([0, 2, 4, 6])
    assert TeacherFeatureCache(tmp_path, TEACHER).key(video, frames) == sha256_of(
        {**stat, "kind": "teacher_features", "frame_indices": [0, 2, 4, 6],
         "settings": RECORDED["teacher_settings"]})


def test_shards_written_before_read_back(tmp_path: Path) -> None:
    for name in ("tracks_v1.npz", "teacher_v1.npz"):  # a shard that fails is deleted
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    recorded = RECORDED["track_shard"]
    entry = read_shard(tmp_path / "tracks_v1.npz", recorded["key"], CachedTracks.from_arrays,
                       "track cache", "clip.mp4")
    assert entry is not None
    expected = np.load(FIXTURES / "tracks_v1_expected.npz")
    np.testing.assert_allclose(entry.tracks, expected["tracks"], atol=1 / 32)
    np.testing.assert_array_equal(entry.visible, expected["visible"])
    assert CacheSettings.from_any(recorded["settings"]).layout == ClipLayout(4, 2, 1)

    recorded = RECORDED["teacher_shard"]
    features = read_shard(tmp_path / "teacher_v1.npz", recorded["key"],
                          CachedFeatures.from_arrays, "teacher feature cache", "clip.mp4")
    assert features is not None
    assert features.frame_indices.tolist() == recorded["frame_indices"]
    np.testing.assert_array_equal(features.features, np.array(recorded["features"], np.float16))
    assert (tmp_path / "tracks_v1.npz").is_file() and (tmp_path / "teacher_v1.npz").is_file()
