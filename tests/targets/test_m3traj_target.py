import dataclasses
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from motionmae.config import (
    ConfigError,
    DataConfig,
    PretrainConfig,
    TargetsConfig,
    from_dict,
    load_config,
)
from motionmae.data.hooks import HookInput, SampleHook
from motionmae.data.lists import VideoEntry
from motionmae.data.transforms import CropBox, Geometry
from motionmae.motion.synthetic import translation_clip, zoom_clip
from motionmae.targets import (
    M3TrajHook,
    M3TrajTarget,
    M3TrajTargetConfig,
    Target,
    build_targets,
    m3traj_dim,
)
from motionmae.targets.m3traj import m3traj_targets
from motionmae.targets.m3traj_hog import orientation_maps, point_hog
from motionmae.targets.m3traj_norm import normalize_patch_std
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=8, height=64, width=64)  # t=4, h=w=4
STRIDE = 2
INDICES = np.arange(GRID.frames) * STRIDE  # F = 15 dense frames
VELOCITY = (2.0, -1.0)  # px per dense frame


def _texture(size, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def moving():
    """15 dense frames of a texture translating by VELOCITY px per frame."""
    return translation_clip(_texture(180), len_dense(), (64, 64), VELOCITY).frames


def len_dense():
    return int(INDICES[-1]) + 1


def _tokens(values, cfg, grid=GRID):
    """[N, D] -> [t, h, w, K, L, features]."""
    return values.reshape(grid.t, grid.h, grid.w, cfg.points_per_side**2, cfg.length, -1)


def test_sizes_are_the_papers():
    # M3Video: K = 4 trajectories per 2x16x16 patch, L = 6 steps, each step a position change
    # (2) and a 9-bin HOG: 264 values per token.
    assert m3traj_dim(M3TrajTargetConfig()) == 264
    # The appendix's HOG per RGB channel: 9 bins x 3 channels per step -> 4 x 6 x (2 + 27).
    assert m3traj_dim(M3TrajTargetConfig(hog_channels="rgb")) == 696
    # Positions only: MME's traj_channel = traj_len * 2 * 4 = 48.
    assert m3traj_dim(M3TrajTargetConfig(hog=False)) == 48
    assert m3traj_dim(M3TrajTargetConfig(hog=False, points_per_side=4, length=3)) == 96
    assert m3traj_dim(M3TrajTargetConfig(hog_bins=6, points_per_side=1, length=1,
                                         norm="none"), GRID) == 8


def test_length_counts_steps_and_old_configs_still_load():
    cfg = from_dict(M3TrajTargetConfig, {"length": 6, "hog": True, "points_per_side": 2},
                    "targets.m3traj")  # a config written before issue 13
    # today's defaults for what it did not say (it cannot resume: its target was narrower)
    assert (cfg.length, cfg.norm, cfg.hog_channels) == (6, "batch", "grey")
    assert m3traj_dim(cfg) == 264  # 6 steps now (was 5 steps, 220 values)
    M3TrajTargetConfig(length=1).validate("targets.m3traj")  # one step: two positions
    with pytest.raises(ConfigError, match=r"targets\.m3traj\.length"):
        M3TrajTargetConfig(length=0).validate("targets.m3traj")


def test_translation_gives_the_known_deltas_and_points_leaving_lose_their_token(moving):
    cfg = M3TrajTargetConfig(norm="none")
    values, weight = m3traj_targets(moving, INDICES, GRID, cfg)
    assert values.shape == (GRID.num_tokens, m3traj_dim(cfg)) and values.dtype == np.float32
    assert weight.shape == (GRID.num_tokens,) and weight.dtype == np.float32
    w = weight.reshape(GRID.t, GRID.h, GRID.w)
    # moving right and up by 12 and 6 px over 6 steps: the right column and the top row leave
    assert np.all(w[:, 0, :] == 0) and np.all(w[:, :, -1] == 0)
    assert np.all(w[:, 1:, :-1] == 1)
    deltas = _tokens(values, cfg)[..., :2][w > 0]  # [valid tokens, K, steps, 2]
    assert deltas.shape[1:] == (4, 6, 2)
    np.testing.assert_allclose(deltas, np.broadcast_to(VELOCITY, deltas.shape), atol=0.15)
    assert np.median(np.abs(deltas - VELOCITY)) < 0.02


@pytest.mark.parametrize("channels", ["grey", "rgb"])
def test_appearance_follows_the_point(moving, channels):
    cfg = M3TrajTargetConfig(norm="path_length", hog_channels=channels)
    values, _ = m3traj_targets(moving, INDICES, GRID, cfg)
    hog = _tokens(values, cfg)[..., 2:]
    assert hog.shape[-1] == 9 * (3 if channels == "rgb" else 1)
    interior = hog[:, 1:3, 1:3]  # windows never touch the border
    per_channel = interior.reshape(*interior.shape[:-1], -1, 9)
    np.testing.assert_allclose(np.linalg.norm(per_channel, axis=-1), 1.0, atol=1e-4)
    drift = np.abs(interior - interior[..., :1, :])
    assert np.median(drift) < 0.02 and drift.max() < 0.1


def test_rgb_histograms_differ_per_channel():
    """A red/blue edge: the green channel is flat (zero histogram), red and blue vote bin 0."""
    frames = np.zeros((len_dense(), 64, 64, 3), np.uint8)
    frames[:, :, 32:, 0] = 200
    frames[:, :, :32, 2] = 200
    cfg = M3TrajTargetConfig(norm="none", hog_channels="rgb")
    values, _ = m3traj_targets(frames, INDICES, GRID, cfg)
    hog = _tokens(values, cfg)[..., 2:].reshape(GRID.t, GRID.h, GRID.w, 4, 6, 3, 9)
    edge = hog[:, :, 1, 1]  # trajectories 1 (top right) sit at x = 28 of the 24 px-wide column
    assert np.abs(hog[..., 1, :]).max() == 0  # green is flat everywhere
    for channel in (0, 2):
        assert np.all(edge[..., channel, 0] > 10 * edge[..., channel, 1:].max(axis=-1))


def test_patch_std_is_mmes_z_score_over_the_patchs_trajectories():
    # K = 4 trajectories of one step: dx = 0, 1, 2, 3 -> mean 1.5, unbiased std sqrt(5/3)
    values = np.zeros((1, 4, 1, 2), np.float32)
    values[:, :, 0, 0] = [0, 1, 2, 3]
    values[:, :, 0, 1] = 7.0  # the same for all K: no spread -> 0
    out = normalize_patch_std(values)
    np.testing.assert_allclose(out[0, :, 0, 0], [-1.161895, -0.387298, 0.387298, 1.161895],
                               atol=1e-5)
    np.testing.assert_array_equal(out[0, :, 0, 1], 0.0)
    # a patch's common motion and scale are removed, per feature
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4, 6, 11)).astype(np.float32)
    shifted = x * 3.0 + rng.normal(size=(5, 1, 6, 11)).astype(np.float32)
    np.testing.assert_allclose(normalize_patch_std(shifted), normalize_patch_std(x), atol=1e-4)
    z = normalize_patch_std(x)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1, ddof=1), 1.0, atol=1e-4)


def test_patch_std_of_a_zoom_has_the_known_signs():
    """Zooming in, the left trajectories of a patch move left of the right ones and the top
    ones above the bottom ones: z-scores -sqrt(3)/2 and +sqrt(3)/2 by column (x) and row (y)."""
    frames = zoom_clip(_texture(180), len_dense(), (64, 64), 1.03).frames
    cfg = M3TrajTargetConfig(hog=False, norm="patch_std")
    values, weight = m3traj_targets(frames, INDICES, GRID, cfg)
    valid = weight.reshape(GRID.t, GRID.spatial) > 0
    assert valid.sum() >= 8
    z = values.reshape(GRID.t, GRID.spatial, 4, 6, 2)[valid]  # [tokens, K, steps, 2]
    half = np.sqrt(3) / 2
    expected_x = np.array([-half, half, -half, half])[:, None]  # K in row-major order
    expected_y = np.array([-half, -half, half, half])[:, None]
    assert np.median(np.abs(z[..., 0] - expected_x)) < 0.15
    assert np.median(np.abs(z[..., 1] - expected_y)) < 0.15
    # the same as normalising the pixel deltas afterwards
    raw, _ = m3traj_targets(frames, INDICES, GRID, dataclasses.replace(cfg, norm="none"))
    np.testing.assert_allclose(values, normalize_patch_std(
        raw.reshape(GRID.num_tokens, 4, 6, 2)).reshape(values.shape), atol=1e-5)


def test_path_length_normalisation_divides_by_the_mean_path_length(moving):
    cfg = M3TrajTargetConfig(norm="none")
    raw, weight = m3traj_targets(moving, INDICES, GRID, cfg)
    norm, weight2 = m3traj_targets(moving, INDICES, GRID,
                                   dataclasses.replace(cfg, norm="path_length"))
    np.testing.assert_array_equal(weight, weight2)
    raw_t, norm_t = _tokens(raw, cfg), _tokens(norm, cfg)
    hist = raw_t[..., 2:]
    np.testing.assert_allclose(norm_t[..., 2:],
                               hist / (np.linalg.norm(hist, axis=-1, keepdims=True) + 1e-6),
                               atol=1e-5)
    valid = weight.reshape(GRID.t, GRID.h, GRID.w) > 0
    expected = np.asarray(VELOCITY) / (6 * np.hypot(*VELOCITY))
    np.testing.assert_allclose(norm_t[..., :2][valid],
                               np.broadcast_to(expected, norm_t[..., :2][valid].shape),
                               atol=0.01)


def test_static_clip_is_all_valid_with_zero_motion():
    frames = np.repeat(_texture(64, seed=3)[None], len_dense(), axis=0)
    for norm in ("none", "path_length"):
        cfg = M3TrajTargetConfig(hog=False, norm=norm)
        values, weight = m3traj_targets(frames, INDICES, GRID, cfg)
        assert np.all(weight == 1)
        assert np.abs(values).max() < 1e-3  # the 1 px floor keeps flow noise small


def test_windows_are_shifted_to_fit_and_too_short_spans_get_zero_weight(moving):
    cfg = M3TrajTargetConfig(hog=False, norm="none")
    # only 13 dense frames: the last tubelet (starting at 10) is shifted back to 6..12
    values, weight = m3traj_targets(moving[:13], INDICES - 2 * (INDICES > 11), GRID, cfg)
    w = weight.reshape(GRID.t, GRID.h, GRID.w)
    assert np.all(w[:, 1:, :-1] == 1)
    deltas = _tokens(values, cfg)[..., :2][w > 0]
    np.testing.assert_allclose(deltas, np.broadcast_to(VELOCITY, deltas.shape), atol=0.15)
    # fewer dense frames than the L + 1 = 7 positions: held and weighted 0
    short = TokenGrid(frames=2, height=64, width=64)
    values, weight = m3traj_targets(moving[:6], np.array([0, 2]), short, cfg)
    assert np.all(weight == 0) and values.shape == (short.num_tokens, m3traj_dim(cfg))


def test_camera_pan_over_a_static_scene(moving):
    """All the motion of ``moving`` is a camera pan: without compensation every trajectory
    moves by the pan, with it by nothing."""
    cfg = M3TrajTargetConfig(hog=False, norm="none")
    for compensate, expected in ((False, VELOCITY), (True, (0.0, 0.0))):
        values, weight = m3traj_targets(moving, INDICES, GRID,
                                        dataclasses.replace(cfg, camera_compensation=compensate))
        valid = weight.reshape(GRID.t, GRID.h, GRID.w) > 0
        assert valid.sum() >= 20
        deltas = _tokens(values, cfg)[..., :2][valid]
        np.testing.assert_allclose(deltas, np.broadcast_to(expected, deltas.shape), atol=0.15)
        assert np.median(np.abs(deltas - np.asarray(expected))) < 0.03


def test_bad_inputs_are_named(moving):
    cfg = M3TrajTargetConfig()
    with pytest.raises(ValueError, match="dense_frames"):
        m3traj_targets(moving[..., 0], INDICES, GRID, cfg)
    with pytest.raises(ValueError, match="frame_indices"):
        m3traj_targets(moving, INDICES + 1, GRID, cfg)
    with pytest.raises(ValueError, match=r"targets\.m3traj\.hog_bins"):
        M3TrajTarget(M3TrajTargetConfig(hog_bins=1), GRID)
    with pytest.raises(ValueError, match=r"targets\.m3traj\.norm"):
        M3TrajTarget(M3TrajTargetConfig(norm="mean"), GRID)
    with pytest.raises(ValueError, match=r"targets\.m3traj\.hog_channels"):
        M3TrajTarget(M3TrajTargetConfig(hog_channels="hsv"), GRID)
    with pytest.raises(ValueError, match="points_per_side >= 2"):
        M3TrajTarget(M3TrajTargetConfig(points_per_side=1, norm="patch_std"), GRID)
    M3TrajTarget(M3TrajTargetConfig(points_per_side=1), GRID)  # batch: one trajectory is fine


def _hook_input(frames, dense, start=100):
    indices = start + INDICES
    return HookInput(frames=frames, entry=VideoEntry(Path("/videos/a.mp4")),
                     frame_indices=indices, geometry=Geometry(CropBox(0, 0, 64, 64), 64),
                     dense_frames=dense)


def test_hook_adds_float32_tensors_and_needs_dense_frames(moving):
    cfg = M3TrajTargetConfig()
    hook = M3TrajHook(GRID, cfg)
    assert isinstance(hook, SampleHook) and hook.needs_dense_frames
    out = hook(_hook_input(moving[INDICES], moving))
    assert set(out) == set(hook.keys) == {"m3traj", "m3traj_weight"}
    assert out["m3traj"].dtype == torch.float32 and out["m3traj"].shape == (GRID.num_tokens, 264)
    assert out["m3traj_weight"].dtype == torch.float32
    assert out["m3traj_weight"].shape == (GRID.num_tokens,)
    expected, _ = m3traj_targets(moving, INDICES, GRID, cfg)
    np.testing.assert_array_equal(out["m3traj"].numpy(), expected)
    assert isinstance(pickle.loads(pickle.dumps(hook)), M3TrajHook)
    with pytest.raises(ValueError, match="dense"):
        hook(_hook_input(moving[INDICES], None))


def test_target_returns_the_batch_tensors_and_is_registered():
    # the norms made in the workers: the target hands the tensors on (batch: its own test file)
    cfg = M3TrajTargetConfig(weight=0.3, norm="patch_std")
    target = build_targets(TargetsConfig(names=["m3traj"], m3traj=cfg), GRID,
                           DataConfig())["m3traj"]
    assert isinstance(target, Target) and isinstance(target, M3TrajTarget)
    assert (target.name, target.dim, target.weight) == ("m3traj", 264, 0.3)
    values = torch.randn(2, GRID.num_tokens, 264)
    weight = torch.ones(2, GRID.num_tokens)
    out, w = target({"m3traj": values, "m3traj_weight": weight})
    assert out is values and w is weight
    with pytest.raises(KeyError, match="M3TrajHook"):
        target({"clip": values})
    with pytest.raises(ValueError, match="m3traj"):
        target({"m3traj": values[..., :10], "m3traj_weight": weight})


def test_point_hog_of_a_vertical_edge_is_bin_zero():
    gray = np.zeros((32, 32), np.uint8)
    gray[:, 16:] = 200
    hist = point_hog(orientation_maps(gray, 9, 8), np.array([[15.5, 10.0], [4.0, 4.0]]))
    # Sobel magnitude 4 x 200 at the two edge columns, averaged over the 8 px window
    np.testing.assert_allclose(hist[0], np.eye(9)[0] * 4 * 200 * 2 / 8, atol=1e-2)
    assert np.abs(hist[1]).max() == 0  # flat window


def test_the_m3video_recipe_asks_for_the_papers_target():
    recipe = Path(__file__).resolve().parents[2] / "configs" / "m3video_vitb_ssv2_pretrain.yaml"
    cfg = load_config(PretrainConfig, recipe)
    m3 = cfg.targets.m3traj
    assert (m3.points_per_side, m3.length, m3.hog, m3.hog_bins) == (2, 6, True, 9)
    assert (m3.hog_channels, m3.norm, m3.camera_compensation) == ("rgb", "patch_std", True)
    assert m3traj_dim(m3) == 696
    assert sorted(cfg.model.joint_targets) == sorted(cfg.targets.names) == ["hog", "m3traj"]
    header = recipe.read_text().split("\nmodel:")[0]
    assert "Remaining differences from the paper and the official code:" in header
    # the library's default norm differs, and the header says so and why
    assert M3TrajTargetConfig().norm == "batch"
    assert "`norm: patch_std`" in header and "default `batch`" in header
