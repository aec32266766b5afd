import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from motionmae.config import DataConfig, M3TrajTargetConfig, TargetsConfig
from motionmae.data.hooks import HookInput, SampleHook
from motionmae.data.lists import VideoEntry
from motionmae.data.transforms import CropBox, Geometry
from motionmae.motion.synthetic import translation_clip
from motionmae.targets import M3TrajHook, M3TrajTarget, Target, build_targets, m3traj_dim
from motionmae.targets.m3traj import m3traj_targets
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
    k = cfg.points_per_side**2
    feat = 2 + (cfg.hog_bins if cfg.hog else 0)
    return values.reshape(grid.t, grid.h, grid.w, k, cfg.length - 1, feat)


def test_dim_formula():
    assert m3traj_dim(M3TrajTargetConfig()) == 4 * 5 * (2 + 9) == 220
    assert m3traj_dim(M3TrajTargetConfig(hog=False, points_per_side=4, length=3)) == 16 * 2 * 2
    assert m3traj_dim(M3TrajTargetConfig(hog_bins=6, points_per_side=1, length=2), GRID) == 8


def test_translation_gives_the_known_deltas_and_points_leaving_lose_their_token(moving):
    cfg = M3TrajTargetConfig()
    values, weight = m3traj_targets(moving, INDICES, GRID, cfg, normalize=False)
    assert values.shape == (GRID.num_tokens, m3traj_dim(cfg)) and values.dtype == np.float32
    assert weight.shape == (GRID.num_tokens,) and weight.dtype == np.float32
    w = weight.reshape(GRID.t, GRID.h, GRID.w)
    # moving right and up by 10 px over 5 steps: the right column and the top row leave
    assert np.all(w[:, 0, :] == 0) and np.all(w[:, :, -1] == 0)
    assert np.all(w[:, 1:, :-1] == 1)
    deltas = _tokens(values, cfg)[..., :2][w > 0]  # [valid tokens, K, steps, 2]
    np.testing.assert_allclose(deltas, np.broadcast_to(VELOCITY, deltas.shape), atol=0.15)
    assert np.median(np.abs(deltas - VELOCITY)) < 0.02


def test_appearance_follows_the_point_and_is_unit_norm(moving):
    cfg = M3TrajTargetConfig()
    values, _ = m3traj_targets(moving, INDICES, GRID, cfg, normalize=False)
    hog = _tokens(values, cfg)[..., 2:]
    interior = hog[:, 1:3, 1:3]  # windows never touch the border
    np.testing.assert_allclose(np.linalg.norm(interior, axis=-1), 1.0, atol=1e-4)
    drift = np.abs(interior - interior[..., :1, :])
    assert np.median(drift) < 0.02 and drift.max() < 0.1


def test_normalisation_divides_by_the_mean_path_length(moving):
    cfg = M3TrajTargetConfig()
    raw, weight = m3traj_targets(moving, INDICES, GRID, cfg, normalize=False)
    norm, weight2 = m3traj_targets(moving, INDICES, GRID, cfg)
    np.testing.assert_array_equal(weight, weight2)
    raw_t, norm_t = _tokens(raw, cfg), _tokens(norm, cfg)
    np.testing.assert_array_equal(norm_t[..., 2:], raw_t[..., 2:])  # HOG untouched
    valid = weight.reshape(GRID.t, GRID.h, GRID.w) > 0
    expected = np.asarray(VELOCITY) / (5 * np.hypot(*VELOCITY))
    np.testing.assert_allclose(norm_t[..., :2][valid],
                               np.broadcast_to(expected, norm_t[..., :2][valid].shape),
                               atol=0.01)


def test_static_clip_is_all_valid_with_zero_motion():
    frames = np.repeat(_texture(64, seed=3)[None], len_dense(), axis=0)
    cfg = M3TrajTargetConfig(hog=False)
    values, weight = m3traj_targets(frames, INDICES, GRID, cfg)
    assert np.all(weight == 1)
    assert np.abs(values).max() < 1e-3  # the 1 px floor keeps flow noise small


def test_windows_are_shifted_to_fit_and_too_short_spans_get_zero_weight(moving):
    cfg = M3TrajTargetConfig(hog=False)
    # only 13 dense frames: the last tubelet (starting at 12) is shifted back to 7..12
    values, weight = m3traj_targets(moving[:13], INDICES - 2 * (INDICES > 11), GRID, cfg,
                                    normalize=False)
    w = weight.reshape(GRID.t, GRID.h, GRID.w)
    assert np.all(w[:, 1:, :-1] == 1)
    deltas = _tokens(values, cfg)[..., :2][w > 0]
    np.testing.assert_allclose(deltas, np.broadcast_to(VELOCITY, deltas.shape), atol=0.15)
    # fewer dense frames than the trajectory length: held and weighted 0
    short = TokenGrid(frames=2, height=64, width=64)
    values, weight = m3traj_targets(moving[:3], np.array([0, 2]), short, cfg, normalize=False)
    assert np.all(weight == 0) and values.shape == (short.num_tokens, m3traj_dim(cfg))


def test_camera_compensation_removes_a_global_translation(moving):
    cfg = M3TrajTargetConfig(camera_compensation=True, hog=False)
    values, weight = m3traj_targets(moving, INDICES, GRID, cfg, normalize=False)
    valid = weight.reshape(GRID.t, GRID.h, GRID.w) > 0
    assert valid.sum() >= 20
    assert np.abs(_tokens(values, cfg)[valid]).max() < 0.1


def test_bad_inputs_are_named(moving):
    cfg = M3TrajTargetConfig()
    with pytest.raises(ValueError, match="dense_frames"):
        m3traj_targets(moving[..., 0], INDICES, GRID, cfg)
    with pytest.raises(ValueError, match="frame_indices"):
        m3traj_targets(moving, INDICES + 1, GRID, cfg)
    with pytest.raises(ValueError, match="hog_bins"):
        M3TrajTarget(M3TrajTargetConfig(hog_bins=1), GRID)


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
    assert out["m3traj"].dtype == torch.float32 and out["m3traj"].shape == (GRID.num_tokens, 220)
    assert out["m3traj_weight"].dtype == torch.float32
    assert out["m3traj_weight"].shape == (GRID.num_tokens,)
    expected, _ = m3traj_targets(moving, INDICES, GRID, cfg)
    np.testing.assert_array_equal(out["m3traj"].numpy(), expected)
    assert isinstance(pickle.loads(pickle.dumps(hook)), M3TrajHook)
    with pytest.raises(ValueError, match="dense"):
        hook(_hook_input(moving[INDICES], None))


def test_target_returns_the_batch_tensors_and_is_registered():
    cfg = M3TrajTargetConfig(weight=0.3)
    target = build_targets(TargetsConfig(names=["m3traj"], m3traj=cfg), GRID,
                           DataConfig())["m3traj"]
    assert isinstance(target, Target) and isinstance(target, M3TrajTarget)
    assert (target.name, target.dim, target.weight) == ("m3traj", 220, 0.3)
    values = torch.randn(2, GRID.num_tokens, 220)
    weight = torch.ones(2, GRID.num_tokens)
    out, w = target({"m3traj": values, "m3traj_weight": weight})
    assert out is values and w is weight
    with pytest.raises(KeyError, match="M3TrajHook"):
        target({"clip": values})
    with pytest.raises(ValueError, match="m3traj"):
        target({"m3traj": values[..., :10], "m3traj_weight": weight})


def test_point_hog_of_a_vertical_edge_is_bin_zero():
    from motionmae.targets.m3traj import _orientation_maps, point_hog

    gray = np.zeros((32, 32), np.uint8)
    gray[:, 16:] = 200
    hist = point_hog(_orientation_maps(gray, 9, 8), np.array([[15.5, 10.0], [4.0, 4.0]]))
    np.testing.assert_allclose(hist[0], np.eye(9)[0], atol=1e-3)
    assert np.abs(hist[1]).max() == 0  # flat window
