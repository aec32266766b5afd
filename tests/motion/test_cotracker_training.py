"""``tracking.tracker: cotracker`` in training and ``extract-tracks``, on a fake CoTracker code
base written to disk and named by ``tracking.cotracker.code`` (a clone that is not installed).

The fake predictors move every query at a known constant velocity (one for the offline
variant, another for the online one) and count their calls in a file beside their code, so a
test can tell which variant ran and whether training tracked online or read the cache.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from motionmae.cli import main
from motionmae.config import ConfigError, PretrainConfig, load_config, to_dict
from motionmae.data import VideoDataset, make_synthetic_dataset, read_video_list
from motionmae.motion import CacheSettings, TrackCache
from motionmae.motion.protocol import patch_center_queries
from motionmae.train.pretrain import (
    build_sample_hooks,
    pretrain,
    token_grid,
)

VELOCITY = {"offline": (1.0, 0.5), "online": (-0.5, 2.0)}  # pixels per frame

PREDICTOR = '''
from pathlib import Path

import torch

CALLS = Path(__file__).with_name("calls.txt")


def _tracks(frames, queries, velocity):
    dt = torch.arange(frames, dtype=torch.float32)[:, None] - queries[0, None, :, 0]
    tracks = queries[0, None, :, 1:] + dt[..., None] * torch.tensor(velocity)
    return tracks[None], torch.ones(tracks.shape[:2], dtype=torch.bool)[None]


class CoTrackerPredictor:
    def __init__(self, checkpoint, window_len):
        assert Path(checkpoint).name == "scaled_offline.pth", checkpoint

    def __call__(self, video, queries=None, backward_tracking=False):
        with CALLS.open("a") as calls:
            calls.write("offline\\n")
        return _tracks(video.shape[1], queries, VELOCITY_OFFLINE)


class CoTrackerOnlinePredictor:
    def __init__(self, checkpoint, window_len):
        assert Path(checkpoint).name == "scaled_online.pth", checkpoint
        self.step = window_len // 2

    def __call__(self, video_chunk, is_first_step=False, queries=None):
        if is_first_step:
            self.queries, self.chunks = queries, 0
            return None, None
        with CALLS.open("a") as calls:
            calls.write("online\\n")
        seen = self.chunks * self.step + video_chunk.shape[1]
        self.chunks += 1
        return _tracks(seen, self.queries, VELOCITY_ONLINE)
'''


@pytest.fixture
def code_base(tmp_path, monkeypatch):
    """A fake CoTracker clone and its two checkpoints; sys.path and sys.modules are restored
    after the test."""
    package = tmp_path / "co-tracker" / "cotracker"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "predictor.py").write_text(
        f"VELOCITY_OFFLINE = {VELOCITY['offline']}\nVELOCITY_ONLINE = {VELOCITY['online']}\n"
        + PREDICTOR)
    for name in ("scaled_offline.pth", "scaled_online.pth"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield package
    for name in ("cotracker.predictor", "cotracker"):
        sys.modules.pop(name, None)


def _calls(code_base) -> list[str]:
    path = code_base / "calls.txt"
    return path.read_text().split() if path.exists() else []


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("cotracker_videos"), num_train=4,
                                  num_val=0, frames=8, size=32, seed=4)


def _config(videos, code_base, *extra) -> PretrainConfig:
    folder = code_base.parents[1]
    return load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={folder / 'run'}", "data.frames=4",
        "data.stride=1", "data.size=32", "data.workers=0", "data.flip=false",
        "model.depth=1", "model.decoder_depth=1", "targets.names=[pixel,tracks]",
        "run.batch_size=2", "run.steps=2", "run.log_every=1", "tracking.tracker=cotracker",
        f"tracking.cotracker.checkpoint={folder / 'scaled_offline.pth'}",
        f"tracking.cotracker.code={code_base.parent}", *extra])


def test_config_names_the_missing_checkpoint_and_a_bad_variant():
    with pytest.raises(ConfigError, match=r"^tracking\.cotracker\.checkpoint: tracking\.tracker "
                                          r"is cotracker: give the path .*scaled_offline\.pth"):
        load_config(PretrainConfig, overrides=["tracking.tracker=cotracker"])
    with pytest.raises(ConfigError, match=r"tracking\.cotracker: .*variant: must be 'offline' "
                                          r"or 'online', got 'streaming'"):
        load_config(PretrainConfig, overrides=["tracking.cotracker.variant=streaming"])


def test_config_saved_before_the_tracker_sections_still_loads(tmp_path):
    """Configs (run folders, checkpoints) from before kept CoTracker's settings flat."""
    cfg = load_config(PretrainConfig, overrides=[
        "tracking.tracker=cotracker", f"tracking.cotracker_checkpoint={tmp_path / 'c.pth'}",
        "tracking.cotracker_variant=online", f"tracking.cotracker_code={tmp_path}",
        "masking.kind=motion", "masking.rho=0.25"])
    assert (cfg.tracking.cotracker.checkpoint, cfg.tracking.cotracker.variant,
            cfg.tracking.cotracker.code) == (str(tmp_path / "c.pth"), "online", str(tmp_path))
    assert cfg.masking.motion.rho == 0.25
    saved = to_dict(cfg)
    assert "cotracker_checkpoint" not in saved["tracking"] and "rho" not in saved["masking"]
    assert saved["tracking"]["cotracker"]["variant"] == "online"
    assert saved["masking"]["motion"] == {"rho": 0.25}


@pytest.mark.parametrize("variant", ["offline", "online"])
def test_samples_carry_the_configured_variants_tracks(videos, code_base, variant):
    folder = code_base.parents[1]
    cfg = _config(videos, code_base, f"tracking.cotracker.variant={variant}",
                  f"tracking.cotracker.checkpoint={folder / f'scaled_{variant}.pth'}")
    grid = token_grid(cfg)
    dataset = VideoDataset(read_video_list(cfg.data.train), cfg.data, train=True, seed=0,
                           sample_hooks=build_sample_hooks(cfg, grid))
    sample = dataset[0]
    queries = patch_center_queries(32, 32, grid.patch)
    expected = queries[None, :, 1:] + np.arange(4)[:, None, None] * VELOCITY[variant]
    np.testing.assert_allclose(sample["tracks"].numpy(), expected, atol=1e-5)
    assert sample["track_visible"].all()
    assert set(_calls(code_base)) == {variant}


def test_pretrain_tracks_online_with_cotracker(videos, code_base):
    result = pretrain(_config(videos, code_base, "run.steps=1", "masking.kind=motion"))
    assert np.isfinite(result.history[-1]["loss/tracks"])
    assert _calls(code_base) == ["offline"] * 2  # each clip of the batch, in the loader


def test_code_folder_without_the_package_says_what_to_provide(videos, code_base, tmp_path):
    cfg = _config(videos, code_base, f"tracking.cotracker.code={tmp_path / 'missing'}")
    dataset = VideoDataset(read_video_list(cfg.data.train), cfg.data, train=True, seed=0,
                           sample_hooks=build_sample_hooks(cfg, token_grid(cfg)))
    with pytest.raises(FileNotFoundError, match=r"CoTracker code base not found: .*missing "
                                                r"has no cotracker package folder"):
        dataset[0]


def test_extract_tracks_then_pretrain_from_the_cache(videos, code_base, tmp_path):
    cfg = _config(videos, code_base, "cache.clips=1")
    sets = ["data.size=32", "data.frames=4", "data.stride=1", "cache.clips=1",
            "tracking.tracker=cotracker",
            f"tracking.cotracker.checkpoint={cfg.tracking.cotracker.checkpoint}",
            f"tracking.cotracker.code={cfg.tracking.cotracker.code}"]
    cache_dir = tmp_path / "cache"
    assert main(["extract-tracks", "--data", str(cfg.data.train), "--cache", str(cache_dir),
                 "--workers", "1", *[a for s in sets for a in ("--set", s)]]) == 0
    assert _calls(code_base) == ["offline"] * 4  # one cached clip per video

    cfg.cache.path = str(cache_dir)
    cache = TrackCache(cache_dir, CacheSettings.for_run(cfg.tracking, cfg.data, cfg.cache))
    assert cache.settings.tracker_settings["checkpoint"] == cfg.tracking.cotracker.checkpoint
    for entry in read_video_list(cfg.data.train).entries:
        tracks = cache.get(entry.path).tracks[0]  # [T, N, 2] of the one cached clip
        np.testing.assert_allclose(tracks - tracks[:1],
                                   np.arange(4)[:, None, None] * VELOCITY["offline"]
                                   * np.ones_like(tracks), atol=1e-5)

    result = pretrain(cfg)
    assert result.state.step == 2
    assert all(np.isfinite(r["loss/tracks"]) for r in result.history)
    assert _calls(code_base) == ["offline"] * 4  # training read every clip from the cache
