"""TrackMAE's official mode is its code's computation (issue 21, item 5): the patch norm's
divisor, CoTracker's query grid and the tracker fed every second frame, each checked against
TrackMAE's training step written out in ``trackmae_reference.py``; and the recipe that selects
them trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from trackmae_reference import official_tracks_target

from motionmae.config import ConfigError, PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.data.hooks import HookInput
from motionmae.data.lists import VideoEntry
from motionmae.data.transforms import CropBox, Geometry
from motionmae.motion import TracksHook, make_tracker, patch_center_queries
from motionmae.motion.frame_step import fill_skipped_frames, track_every
from motionmae.motion.protocol import query_grid
from motionmae.motion.synthetic import translation_clip
from motionmae.targets import TracksTarget, TracksTargetConfig
from motionmae.tokens import TokenGrid

RECIPE = Path(__file__).resolve().parents[2] / "configs" / \
    "trackmae_vitb_k400_pixel_tracks_pretrain.yaml"
OFFICIAL = TracksTargetConfig(weight=1.0, norm="patch", windows="official",
                              upsample_mode="align_corners", use_visibility=False)


class RecordingTracker:
    """A point tracker that keeps every call's frames, queries and answer."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def track(self, frames: np.ndarray, queries: np.ndarray):
        tracks, visible = self.inner.track(frames, queries)
        self.calls.append((frames.copy(), queries.copy(), tracks.copy()))
        return tracks, visible


class ZoomTracker:
    """Known non-rigid motion: every point moves away from ``centre`` by ``rate`` of its
    distance per frame it is given."""

    def __init__(self, centre: float, rate: float) -> None:
        self.centre, self.rate = centre, rate

    def track(self, frames: np.ndarray, queries: np.ndarray):
        t = np.arange(len(frames), dtype=np.float64)[:, None, None]
        points = queries[None, :, 1:].astype(np.float64)
        tracks = points + (points - self.centre) * self.rate * t
        return tracks.astype(np.float32), np.ones(tracks.shape[:2], bool)


def _hook_tracks(frames: np.ndarray, tracker, grid: str, frame_step: int) -> torch.Tensor:
    """The ``tracks`` entry a :class:`TracksHook` adds to a sample, ``[1, T, N, 2]``."""
    hook = TracksHook(patch=16, grid=grid, frame_step=frame_step)
    hook._get_tracker = lambda: tracker  # the tracker under test instead of a registered one
    size = frames.shape[1]
    sample = HookInput(frames=frames, entry=VideoEntry(Path("clip.mp4")),
                       frame_indices=np.arange(len(frames)),
                       geometry=Geometry(CropBox(0, 0, size, size), size, False))
    return hook(sample)["tracks"][None]


# -- (a) the patch norm divides by the unbiased std + 1e-6 ------------------------------------


def test_official_patch_norm_is_the_unbiased_std_plus_eps_on_near_static_tokens():
    grid = TokenGrid(frames=16, height=64, width=64)
    g = torch.Generator().manual_seed(0)
    # Near-static points: a thousandth of a pixel of tracker noise, as real trackers report.
    still = torch.from_numpy(patch_center_queries(64, 64, 16)[:, 1:])
    tracks = still + 1e-3 * torch.randn(1, grid.frames, grid.spatial, 2, generator=g)
    official = TracksTarget(OFFICIAL, grid)
    values, _ = official({"tracks": tracks})
    d = official.pixels(tracks)  # [1, L, 4, 2] displacements
    by_hand = (d - d.mean(dim=2, keepdim=True)) / (d.std(dim=2, keepdim=True) + 1e-6)
    torch.testing.assert_close(values, by_hand.flatten(2), atol=1e-5, rtol=1e-5)
    # The variance form, still an option (and the default mode's), differs by up to 0.7 here.
    variance_form = (d - d.mean(dim=2, keepdim=True)) / (d.var(dim=2, keepdim=True)
                                                         + 1e-6).sqrt()
    sqrt_var = dataclasses.replace(OFFICIAL, patch_std="sqrt_var_eps")
    other, _ = TracksTarget(sqrt_var, grid)({"tracks": tracks})
    torch.testing.assert_close(other, variance_form.flatten(2), atol=1e-5, rtol=1e-5)
    assert (values - other).abs().max() > 0.2
    # windows=official picks it (auto); the default windows keep the variance form.
    assert OFFICIAL.resolved_patch_std() == "std_plus_eps"
    assert TracksTargetConfig(norm="patch").resolved_patch_std() == "sqrt_var_eps"
    default = TracksTarget(TracksTargetConfig(norm="patch", use_visibility=False), grid)
    d = default.pixels(tracks)
    torch.testing.assert_close(default({"tracks": tracks})[0], (
        (d - d.mean(dim=2, keepdim=True)) / (d.var(dim=2, keepdim=True) + 1e-6).sqrt()
    ).flatten(2), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match=r"targets\.tracks\.patch_std: must be one of"):
        dataclasses.replace(OFFICIAL, patch_std="std").validate("targets.tracks")


# -- (b) the query points are CoTracker's grid_size grid with its margin ----------------------


def _cotracker_grid_by_hand(size: int, points: int) -> np.ndarray:
    """CoTracker3 lays ``linspace(m, R - m, points)`` with ``m = 512 / 64`` over its 384 x 512
    model resolution and maps it to the clip by ``(size - 1) / (R - 1)``; ``(x, y)`` rows."""
    margin = 512 / 64
    xs = np.linspace(margin, 512 - margin, points) * (size - 1) / 511
    ys = np.linspace(margin, 384 - margin, points) * (size - 1) / 383
    return np.array([(x, y) for y in ys for x in xs])


def test_official_queries_are_cotrackers_grid_and_the_target_is_computed_from_them():
    expected = _cotracker_grid_by_hand(224, 14)
    grid224 = query_grid("cotracker", 224, 224, 16)
    np.testing.assert_allclose(grid224[:, 1:], expected, atol=1e-4)
    assert np.all(grid224[:, 0] == 0)
    np.testing.assert_allclose(grid224[[0, -1], 1:], [[3.4912, 4.6580], [219.9452, 218.9243]],
                               atol=1e-4)

    # A 64 px, 16-frame clip zooming out (a known motion that depends on where a point is).
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    tracker = RecordingTracker(ZoomTracker(centre=31.5, rate=0.01))
    tracks = _hook_tracks(frames, tracker, "cotracker", frame_step=2)
    (_, queries, seen), = tracker.calls
    np.testing.assert_allclose(queries[:, 1:], _cotracker_grid_by_hand(64, 4), atol=1e-4)
    grid = TokenGrid(frames=16, height=64, width=64)
    for norm in ("none", "patch"):
        cfg = dataclasses.replace(OFFICIAL, norm=norm)
        values, _ = TracksTarget(cfg, grid)({"tracks": tracks})
        reference = official_tracks_target(torch.from_numpy(seen)[None], 4, 4, norm=norm)
        torch.testing.assert_close(values, reference.flatten(2), atol=1e-4, rtol=1e-4)
    # The patch centres' tracks give other pixel targets: the grid is what the target reads.
    centres = _hook_tracks(frames, ZoomTracker(centre=31.5, rate=0.01), "patch_centres", 2)
    pixels = TracksTarget(dataclasses.replace(OFFICIAL, norm="none"), grid)
    assert (pixels({"tracks": centres})[0] - pixels({"tracks": tracks})[0]).abs().max() > 0.02


# -- (c) the tracker sees frames 0, 2, ..., 14 only -------------------------------------------


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """Smooth random texture, 256 x 256 RGB (Lucas-Kanade tracks it well)."""
    noise = np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0).clip(0, 255).astype(np.uint8)


def test_official_tracker_sees_every_second_frame_and_the_target_is_trackmaes(texture):
    velocity = np.array([0.5, -0.25])  # px per clip frame: 1.0, -0.5 per tubelet
    clip = translation_clip(texture, 16, (96, 96), tuple(velocity))
    tracker = RecordingTracker(make_tracker("lk"))
    tracks = _hook_tracks(clip.frames, tracker, "cotracker", frame_step=2)

    (frames, queries, seen), = tracker.calls  # one call, with frames 0, 2, ..., 14 only
    assert frames.shape == (8, 96, 96, 3)
    np.testing.assert_array_equal(frames, clip.frames[0::2])
    assert np.all(queries[:, 0] == 0)
    # The tracked frames hold the tracker's answers; the target reads no other frame.
    torch.testing.assert_close(tracks[0, ::2], torch.from_numpy(seen))

    grid = TokenGrid(frames=16, height=96, width=96)
    seen_t = torch.from_numpy(seen)[None]
    none = dataclasses.replace(OFFICIAL, norm="none")
    pixels, _ = TracksTarget(none, grid)({"tracks": tracks})
    torch.testing.assert_close(pixels, official_tracks_target(seen_t, 6, 6, norm="none")
                               .flatten(2), atol=1e-4, rtol=1e-4)
    # Known displacement: the tokens away from the border (whose points stay in view) moved
    # by 2 x velocity per tubelet.
    inner = pixels.view(grid.t, grid.h, grid.w, 4, 2)[:, 2:4, 2:4]
    torch.testing.assert_close(inner, torch.tensor(2 * velocity, dtype=torch.float32)
                               .expand_as(inner), atol=0.1, rtol=0)
    values, _ = TracksTarget(OFFICIAL, grid)({"tracks": tracks})
    # TrackMAE's arithmetic in float64: in float32, upsampling ~50 px positions before taking
    # differences rounds at 4e-6 px, 1e-2 of these rigid tokens' 3e-4 px spread.
    reference = official_tracks_target(seen_t.double(), 6, 6).flatten(2).float()
    torch.testing.assert_close(values, reference, atol=1e-3, rtol=1e-3)


def test_skipped_frames_lie_between_the_tracked_ones_and_the_last_copies_its_predecessor():
    tracks = np.array([[[0.0, 0.0]], [[4.0, 2.0]], [[6.0, 2.0]]], np.float32)  # frames 0, 2, 4
    visible = np.array([[True], [False], [True]])
    full, seen = fill_skipped_frames(tracks, visible, 2, 6)
    np.testing.assert_allclose(full[:, 0], [[0, 0], [2, 1], [4, 2], [5, 2], [6, 2], [6, 2]])
    assert seen[:, 0].tolist() == [True, False, False, False, True, True]
    # A clip of which the tracker sees one frame: every point stays where it was asked.
    queries = np.array([[0.0, 3.0, 4.0]], np.float32)
    still, _ = track_every(make_tracker("flow"), np.zeros((2, 8, 8, 3), np.uint8), queries, 2)
    np.testing.assert_array_equal(still, [[[3.0, 4.0]], [[3.0, 4.0]]])
    with pytest.raises(ValueError, match="t=1, which the tracker does not see"):
        track_every(make_tracker("lk"), np.zeros((4, 8, 8, 3), np.uint8),
                    np.array([[1.0, 3.0, 4.0]], np.float32), 2)


def test_frame_step_refuses_windows_that_read_frames_the_tracker_did_not_see():
    with pytest.raises(ConfigError, match=r"tracking\.frame_step: the tracker sees clip frames "
                       r"0, 2, 4, \.\.\. only, but targets\.tracks\.windows=tubelet reads "
                       r"frames \[13, 15\] too"):
        load_config(PretrainConfig, RECIPE, ["targets.tracks.windows=tubelet"])
    with pytest.raises(ConfigError, match=r"tracking\.frame_step: must be >= 1"):
        load_config(PretrainConfig, RECIPE, ["tracking.frame_step=0"])
    with pytest.raises(ConfigError, match=r"tracking\.grid: must be one of"):
        load_config(PretrainConfig, RECIPE, ["tracking.grid=centres"])


# -- the recipe selects all of it, and trains ---------------------------------------------------


def test_trackmae_recipe_selects_the_official_computation_and_trains_two_steps(tmp_path):
    from motionmae.train.pretrain import pretrain

    recipe = load_config(PretrainConfig, RECIPE)
    assert (recipe.tracking.grid, recipe.tracking.frame_step) == ("cotracker", 2)
    assert recipe.targets.tracks.resolved_patch_std() == "std_plus_eps"
    videos = make_synthetic_dataset(tmp_path / "videos", num_train=2, num_val=0, frames=64,
                                    size=32, seed=1)
    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, RECIPE, [
        "model.size=tiny", "model.depth=1", "model.decoder_depth=1", "data.size=32",
        "data.workers=0", "run.batch_size=2", "run.steps=2", "run.epochs=null",
        "run.precision=fp32", "run.device=cpu", "run.log_every=1",
        f"data.train={videos.train_list}", f"run.out={out}"])
    result = pretrain(cfg)
    assert result.state.step == 2
    record = result.history[-1]
    assert np.isfinite(record["loss/tracks"]) and record["skipped_steps"] == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["tracking"]["grid"] == "cotracker" and saved["tracking"]["frame_step"] == 2
    assert saved["targets"]["tracks"]["patch_std"] == "std_plus_eps"
