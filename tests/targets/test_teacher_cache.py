"""Teacher features in the cache: the crop/flip geometry onto whole-frame feature maps, the
round trip extract -> loader hook -> target (equal to online on an uncropped clip), online
fallback for misses, keys, and ``motionmae extract-teacher`` + ``pretrain`` end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from teacher_folders import IMAGE, write_teacher

from motionmae.cache import ClipLayout
from motionmae.cli import main
from motionmae.config import ConfigError, PretrainConfig, load_config
from motionmae.data import VideoDataset, make_synthetic_dataset, read_video_list
from motionmae.data.dataset import collate_samples
from motionmae.data.transforms import CropBox, Geometry, transform_points
from motionmae.targets.teacher import TeacherTarget, TeacherTargetConfig
from motionmae.targets.teacher_cache import (
    CachedFeatures,
    TeacherCacheSettings,
    TeacherFeatureCache,
    cached_features_for_geometry,
    frame_input_size,
    teacher_features_hook,
)
from motionmae.targets.teacher_extract import extract_teacher
from motionmae.targets.teacher_models import load_teacher, read_teacher_spec
from motionmae.tokens import TokenGrid
from motionmae.train.pretrain import token_grid

pytest.importorskip("transformers")

FRAMES, SIZE = 4, 32  # clips of 4 frames at 32 px: 2 x 2 x 2 tokens of 16 px


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_teacher(tmp_path_factory.mktemp("teacher") / "clip", "clip_vision_model")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("videos"), num_train=3, num_val=1,
                                  frames=12, size=SIZE, seed=4)


def config(teacher_dir: Path, videos, cache: Path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"cache.path={cache}",
        "targets.names=[teacher]", f"targets.teacher.path={teacher_dir}",
        "targets.teacher.norm=none", f"data.frames={FRAMES}", f"data.size={SIZE}",
        "data.stride=2", "cache.clips=2", "data.workers=0", *extra])


def settings_of(cfg: PretrainConfig, spec) -> TeacherCacheSettings:
    """The cache settings ``extract-teacher`` writes under for ``cfg``."""
    return TeacherCacheSettings.for_run(cfg.targets.teacher, token_grid(cfg).tubelet,
                                        cfg.data.size, spec)


def fill(cfg: PretrainConfig, videos: list[Path]):
    spec = read_teacher_spec(cfg.targets.teacher.path)
    cache = TeacherFeatureCache(cfg.cache.path, settings_of(cfg, spec))
    return cache, extract_teacher(videos, cache, load_teacher(spec), cfg.cache.layout(cfg.data))


# -- geometry -------------------------------------------------------------------------------


def clip_to_decoded(points: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Inverse of ``transform_points`` (clip pixels -> decoded pixels), from its affine map."""
    p0 = transform_points(np.zeros((1, 2)), geometry.box, geometry.size, geometry.flip)
    p1 = transform_points(np.ones((1, 2)), geometry.box, geometry.size, geometry.flip)
    return (points - p0[0]) / (p1 - p0)[0]


@pytest.mark.parametrize("mode", ["bilinear", "area"])
@pytest.mark.parametrize("geometry", [
    Geometry(CropBox(0, 0, 48, 48), 64, False),
    Geometry(CropBox(10, 4, 36, 36), 64, True),
    Geometry(CropBox(20, 6, 30, 30), 32, True),
], ids=["scale", "crop-flip", "small-crop-flip"])
def test_tokens_read_the_features_of_their_own_image_region(geometry, mode):
    """Feature maps whose cells hold their own decoded-pixel centre coordinates. ``bilinear``:
    every token gets the decoded position of its patch centre (the point ``transform_points``
    maps to it; exact, the field is linear). ``area``: the mean of the cells under the token's
    patch, found by densely sampling the patch and mapping the samples back."""
    height, width, g_h, g_w = 48, 64, 6, 8
    cx = (np.arange(g_w) + 0.5) * width / g_w - 0.5  # cell centres, decoded pixels
    cy = (np.arange(g_h) + 0.5) * height / g_h - 0.5
    coords = np.stack(np.broadcast_arrays(cx[None, :], cy[:, None]), axis=-1)  # [g_h, g_w, 2]
    clip = CachedFeatures(frame_indices=np.arange(2), features=coords[None].astype(np.float32),
                          frame_size=(height, width), source_size=(height, width))
    grid = TokenGrid(frames=2, height=geometry.size, width=geometry.size, tubelet=2, patch=16)
    values = cached_features_for_geometry(clip, geometry, grid, mode).reshape(grid.h, grid.w, 2)
    k = np.arange(grid.w)
    if mode == "bilinear":
        centres = np.stack(np.meshgrid(k, k), -1) * 16 + 7.5  # patch centres, clip pixels
        expected = clip_to_decoded(centres, geometry)
    else:
        sub = (np.arange(256) + 0.5) / 256 * 16 - 0.5  # dense samples of a 16 px patch
        samples = (k[:, None] * 16 + sub[None, :]).reshape(-1)
        decoded = clip_to_decoded(np.stack([samples, samples], -1), geometry)
        cell_x = cx[np.clip(((decoded[:, 0] + 0.5) * g_w / width).astype(int), 0, g_w - 1)]
        cell_y = cy[np.clip(((decoded[:, 1] + 0.5) * g_h / height).astype(int), 0, g_h - 1)]
        mean_x = cell_x.reshape(grid.w, -1).mean(1)
        mean_y = cell_y.reshape(grid.h, -1).mean(1)
        expected = np.stack(np.broadcast_arrays(mean_x[None, :], mean_y[:, None]), -1)
    np.testing.assert_allclose(values, expected, atol=0.05)


def test_frame_input_size_keeps_aspect_in_whole_patches():
    assert frame_input_size(32, 32, 32, 8) == (32, 32)
    assert frame_input_size(224, 298, 224, 16) == (224, 304)  # 298 * 224 / 224 = 18.6 patches
    assert frame_input_size(300, 200, 224, 14) == (336, 224)


# -- round trip -----------------------------------------------------------------------------


def test_cached_equals_online_on_the_whole_frame_and_misses_fall_back(teacher_dir, videos,
                                                                        tmp_path, caplog):
    """Square videos, crop = whole frame, no flip: the cached features (through the loader
    hook) equal the online target up to float16 storage. A video without entries is served
    zeros + ``teacher_cached=False`` and the target fills it online."""
    cfg = config(teacher_dir, videos, tmp_path / "cache", "data.scales=[1.0]", "data.flip=false")
    paths = [entry.path for entry in read_video_list(videos.train_list).entries]
    _, stats = fill(cfg, paths[:2])
    assert (stats.done, stats.skipped_existing, stats.failed) == (2, 0, [])
    layout = cfg.cache.layout(cfg.data)
    shards = list((tmp_path / "cache").rglob("*.npz"))
    assert len(shards) == 2 * len(layout.indices(12))  # one shard per (video, cached clip)
    _, again = fill(cfg, paths)
    assert (again.done, again.skipped_existing) == (1, 2)  # resumable: only the new video

    grid = token_grid(cfg)
    hook = teacher_features_hook(cfg.targets.teacher, cfg.cache.path, grid, cfg.data.size)
    dataset = VideoDataset(read_video_list(videos.train_list), cfg.data, train=True,
                           sample_hooks=[hook], clip_sampler=layout.sample)
    batch = collate_samples([dataset[i] for i in range(3)])
    assert batch["teacher_cached"] == [True, True, True] and hook.cached == 3
    target = TeacherTarget(cfg.targets.teacher, grid, cfg.data.mean, cfg.data.std)
    online = target.features(batch["clip"])
    values, _ = target(batch)
    assert target.stats.cached == 3 and target.stats.online == 0
    torch.testing.assert_close(values, online, atol=3e-3, rtol=0)  # float16 storage

    for shard in (tmp_path / "cache").rglob("*.npz"):  # drop video 0's entries
        if json.loads(np.load(shard)["meta"].tobytes())["video"] == str(paths[0].resolve()):
            shard.unlink()
    batch = collate_samples([dataset[i] for i in range(2)])
    assert batch["teacher_cached"] == [False, True]
    assert batch["teacher_features"][0].abs().max() == 0
    with caplog.at_level(logging.WARNING):
        values, _ = target(batch)
    assert "1 of 2 clips of a batch are not cached" in caplog.text
    assert (target.stats.cached, target.stats.online) == (4, 1)
    torch.testing.assert_close(values, target.features(batch["clip"]), atol=3e-3, rtol=0)


def test_key_covers_teacher_identity_and_settings(teacher_dir, videos, tmp_path):
    cfg = config(teacher_dir, videos, tmp_path / "cache")
    video = Path(read_video_list(videos.train_list).entries[0].path)
    cache, _ = fill(cfg, [video])
    clip = ClipLayout(FRAMES, 2, 2).indices(12)[0]
    entry = cache.get(video, clip)
    assert entry is not None and entry.features.shape == (2, IMAGE // 8, IMAGE // 8, 32)
    np.testing.assert_array_equal(entry.frame_indices, clip)
    assert cache.get(video, clip + 1) is None  # another clip

    spec = read_teacher_spec(teacher_dir)
    other_frame = settings_of(
        config(teacher_dir, videos, tmp_path / "cache", "targets.teacher.frame=1"), spec)
    assert TeacherFeatureCache(cfg.cache.path, other_frame).get(video, clip) is None

    retrained = tmp_path / "retrained"  # same config, other weights: another fingerprint
    write_teacher(retrained, "clip_vision_model", seed=1)
    assert read_teacher_spec(retrained).fingerprint != spec.fingerprint
    other_teacher = settings_of(
        config(retrained, videos, tmp_path / "cache"), read_teacher_spec(retrained))
    assert TeacherFeatureCache(cfg.cache.path, other_teacher).get(video, clip) is None

    shard = cache.shard_path(cache.key(video, clip))
    payload = bytearray(shard.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    shard.write_bytes(bytes(payload))
    assert cache.get(video, clip) is None and not shard.exists()  # corrupt: reported, deleted


# -- command line ---------------------------------------------------------------------------


def test_cli_extract_teacher_then_pretrain_teacher_and_tracks(teacher_dir, videos, tmp_path,
                                                               caplog):
    """``extract-teacher`` fills the cache; ``pretrain --targets teacher,tracks`` trains on it
    (tracks online, weight 0.25) and logs both losses; without a cache it runs the teacher."""
    common = ["--set", "data.frames=4", "--set", "data.size=32", "--set", "data.stride=2",
              "--set", "tracking.cache_clips=2"]  # the old key still works
    cache = tmp_path / "cache"
    assert main(["extract-teacher", "--data", str(videos.train_list), "--cache", str(cache),
                 "--teacher", str(teacher_dir), "--device", "cpu", *common]) == 0
    assert len(list(cache.rglob("*.npz"))) == 3 * 2
    for cached in (True, False):
        out = tmp_path / f"run-{cached}"
        extra = ["--set", f"tracking.cache={cache}"] if cached else []  # the old key
        with caplog.at_level(logging.WARNING):
            code = main([
                "pretrain", "--data", str(videos.train_list), "--out", str(out), "--steps", "2",
                "--batch-size", "2", "--targets", "teacher,tracks", "--set",
                f"targets.teacher.path={teacher_dir}", "--set", "model.depth=1", "--set",
                "model.decoder_depth=1", "--set", "data.workers=0", "--set",
                "run.log_every=1", *common, *extra])
        assert code == 0
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2]
        assert {"loss/teacher", "loss/tracks"} <= set(records[-1])
        assert "not cached" not in caplog.text
        saved = load_config(PretrainConfig, out / "config.yaml")
        assert saved.targets.loss_weight("tracks") == 0.25


def test_the_cache_settings_ask_the_teachers_own_frame_rule():
    """One rule, one message: extract-teacher (whose config may not select the teacher) and
    training's run check refuse a frame outside the tubelet alike."""
    message = r"targets\.teacher\.frame: must be < model\.tubelet_size 2, got 2"
    with pytest.raises(ConfigError, match=message):
        TeacherCacheSettings.for_run(TeacherTargetConfig(frame=2), 2, 32, spec=None)
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, overrides=["targets.names=[teacher]",
                                               "targets.teacher.path=x", "targets.teacher.frame=2"])
