"""The tracks target's opt-in horizon channels and motion-weighted tokens (issue 21, item 1):
known answers on translations (synthetic tracks and a texture through the tracker), clamping at
the clip's end, visibility, the defaults unchanged, config errors naming the key, and a
two-step pretraining with each option."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from motionmae.config import ConfigError, PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.motion import make_tracker, patch_center_queries
from motionmae.motion.synthetic import translation_clip
from motionmae.targets import TracksTarget, TracksTargetConfig, masked_mse
from motionmae.targets.track_horizons import horizon_windows, motion_weights
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=8, height=64, width=48)  # t=4 (starts 0, 2, 4, 5), h=4, w=3
# Frames from each tubelet's window start to its horizon's end, min(s + k*u, T-1) - s.
SPAN = {2: [4, 4, 3, 2], 3: [6, 5, 3, 2]}


def _centres(grid=GRID):
    return torch.from_numpy(patch_center_queries(grid.height, grid.width, grid.patch))[:, 1:]


def _field_tracks(velocity, grid=GRID, batch=1):
    """Points moving with a constant per-frame velocity field ``velocity(p) [N, 2]``."""
    p = _centres(grid)
    frames = torch.arange(grid.frames, dtype=torch.float32).view(1, -1, 1, 1)
    return (p + frames * velocity(p)).expand(batch, -1, -1, -1).clone()


def _translation(v, grid=GRID, batch=1):
    return _field_tracks(lambda p: torch.tensor(v).expand_as(p), grid, batch)


def _visible(grid=GRID, batch=1):
    return torch.ones(batch, grid.frames, grid.spatial, dtype=torch.bool)


def _groups(values, target, grid=GRID):
    """``[B, L, dim]`` -> ``[B, t, h*w, 1 + K, U^2, 2]``: the tubelet's channels, then each
    horizon's."""
    return values.view(values.shape[0], grid.t, grid.spatial, -1, target.points, 2)


def test_horizon_windows_start_with_the_tubelet_and_clamp_at_the_last_frame():
    assert horizon_windows([0, 2, 4, 5], 8, 2, [2, 3]) == ([0, 2, 4, 5] * 2,
                                                           [4, 6, 7, 7, 6, 7, 7, 7])


@pytest.mark.parametrize("upsample", [1, 2])
@pytest.mark.parametrize(("norm", "divisor"), [("none", 1.0), ("scale", 4.0)])
def test_translation_gives_k_tubelets_of_displacement_clamped_at_the_clip_end(upsample, norm,
                                                                               divisor):
    v = torch.tensor([1.5, -0.5])
    cfg = TracksTargetConfig(norm=norm, scale=4.0, upsample=upsample, horizons=[2, 3])
    target = TracksTarget(cfg, GRID)
    values, weight = target({"tracks": _translation([1.5, -0.5], batch=2),
                             "track_visible": _visible(batch=2)})
    assert target.dim == upsample**2 * 2 * 3 and values.shape == (2, GRID.num_tokens, target.dim)
    groups = _groups(values, target)
    own = groups[..., 0, :, :]
    torch.testing.assert_close(own, (2 * v / divisor).expand_as(own))
    for i, k in enumerate((2, 3), start=1):
        # Tubelets 0 and 1 see k * u frames (horizon 3: tubelet 0 only); later ones are clamped.
        expected = torch.tensor(SPAN[k], dtype=torch.float32).view(-1, 1, 1, 1) * v / divisor
        torch.testing.assert_close(groups[:, :, :, i], expected.expand_as(groups[:, :, :, i]))
    assert torch.all(weight == 1)


def test_batch_norm_divides_each_horizon_by_its_own_rms():
    v = torch.tensor([3.0, 4.0])  # 5 px per frame
    target = TracksTarget(TracksTargetConfig(norm="batch", horizons=[2, 3]), GRID)
    values, _ = target({"tracks": _translation([3.0, 4.0]), "track_visible": _visible()})
    groups = _groups(values, target)
    # Tubelet channels: (6, 8) px everywhere, RMS sqrt((36 + 64) / 2) = sqrt(50).
    own = groups[..., 0, :, :]
    torch.testing.assert_close(own, (2 * v / 50**0.5).expand_as(own))
    # Horizon k's mean square: (9 + 16) / 2 * mean(span^2), spans 4, 4, 3, 2 (k = 2: 140.625)
    # and 6, 5, 3, 2 (k = 3: 231.25).
    for i, (k, mean_square) in enumerate(((2, 140.625), (3, 231.25)), start=1):
        span = torch.tensor(SPAN[k], dtype=torch.float32).view(-1, 1, 1, 1)
        expected = span * v / mean_square**0.5
        torch.testing.assert_close(groups[:, :, :, i], expected.expand_as(groups[:, :, :, i]))


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """Smooth random texture, 256 x 256 RGB (Lucas-Kanade tracks it well)."""
    noise = np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0).clip(0, 255).astype(np.uint8)


def test_a_texture_translated_through_the_tracker_gives_k_tubelets_of_displacement(texture):
    velocity = (0.5, -0.25)  # px per clip frame
    clip = translation_clip(texture, 8, (96, 96), velocity)
    grid = TokenGrid(frames=8, height=96, width=96)  # 6 x 6 patches
    queries = patch_center_queries(96, 96, 16).astype(np.float32)
    tracks, visible = make_tracker("lk").track(clip.frames, queries)
    target = TracksTarget(TracksTargetConfig(norm="none", horizons=[2, 3]), grid)
    values, _ = target({"tracks": torch.from_numpy(tracks)[None],
                        "track_visible": torch.from_numpy(visible)[None]})
    groups = values.view(grid.t, grid.h, grid.w, 3, 4, 2)[:, 2:4, 2:4]  # away from the border
    v = torch.tensor(velocity)
    for i, span in enumerate(([2, 2, 2, 2], SPAN[2], SPAN[3])):
        expected = torch.tensor(span, dtype=torch.float32).view(-1, 1, 1, 1, 1) * v
        torch.testing.assert_close(groups[:, :, :, i], expected.expand_as(groups[:, :, :, i]),
                                   atol=0.1, rtol=0)


def test_a_point_invisible_at_a_horizon_end_zeroes_the_tokens_that_read_it():
    visible = _visible()
    point = 1 * GRID.w + 1
    visible[0, 6, point] = False  # ends tubelet 2's window, horizon 2 of tubelet 1, 3 of 0
    batch = {"tracks": _translation([1.0, 0.0]), "track_visible": visible}
    for horizons, zeroed in (([], {2}), ([2], {1, 2}), ([2, 3], {0, 1, 2})):
        cfg = TracksTargetConfig(norm="none", upsample=1, horizons=horizons)
        _, weight = TracksTarget(cfg, GRID)(batch)
        weight = weight.view(GRID.t, GRID.spatial)
        for t in range(GRID.t):
            expected = torch.ones(GRID.spatial)
            if t in zeroed:
                expected[point] = 0
            assert torch.equal(weight[t], expected), (horizons, t)


def test_defaults_leave_the_target_and_its_loss_as_they_were():
    """Numbers computed with the target before the options existed (same seeded case)."""
    grid = TokenGrid(frames=4, height=32, width=32)  # t=2, h=2, w=2: L=8
    g = torch.Generator().manual_seed(0)
    tracks = (torch.randn(2, 4, 4, 2, generator=g) * 3).cumsum(dim=1)
    visible = torch.ones(2, 4, 4, dtype=torch.bool)
    visible[1, 3, 2] = False
    pred = torch.randn(2, 3, 8, generator=g)
    masked_idx = torch.tensor([[0, 3, 5], [1, 2, 7]])
    cfg = TracksTargetConfig()
    assert (cfg.horizons, cfg.motion_weight) == ([], 0.0)
    target = TracksTarget(cfg, grid)
    values, weight = target({"tracks": tracks, "track_visible": visible})
    assert target.dim == 8
    torch.testing.assert_close(values[0, :2], torch.tensor([
        [-1.40676868, -3.23673415, -0.58560407, -1.67715335, -0.65278584, -2.15876436,
         -0.15238500, -0.96194029],
        [0.23556055, -0.11757240, 1.05672526, 1.44200838, 0.34801582, 0.23488386,
         0.84841663, 1.43170798]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(values[1, 7], torch.tensor(
        [0.95843095, -0.04309962, 2.32183886, 0.29705560, 0.84964490, -1.47256660,
         2.28583288, -1.35170197]), atol=1e-6, rtol=0)
    assert weight.tolist() == [[1.0] * 8, [1.0] * 4 + [0.0] * 4]
    assert values.sum().item() == pytest.approx(23.90254020690918, abs=1e-5)
    assert values.square().sum().item() == pytest.approx(177.0061492919922, abs=1e-4)
    loss = masked_mse(pred, values, masked_idx, weight)
    assert loss.item() == pytest.approx(3.2348015308380127, abs=1e-6)


# -- motion weights -----------------------------------------------------------------------------


def _right_column_moves(batch=1):
    """Patch column 2 (centre x = 40 px) moves 2 px per frame; the others stand still."""
    return _field_tracks(lambda p: (p[:, :1] > 30).float() * torch.tensor([2.0, 0.0]),
                         batch=batch)


def test_a_static_token_weighs_one_and_a_moving_one_more():
    cfg = TracksTargetConfig(norm="none", upsample=1, motion_weight=0.5)
    batch = {"tracks": _right_column_moves(), "track_visible": _visible()}
    values, weight = TracksTarget(cfg, GRID)(batch)
    # m = 4 px on a third of the tokens, 0 elsewhere: mean(m) = 4/3, moving 1 + 0.5 * 3.
    expected = torch.tensor([1.0, 1.0, 2.5]).repeat(GRID.t * GRID.h)
    torch.testing.assert_close(weight[0], expected)
    assert not weight.requires_grad
    plain, plain_weight = TracksTarget(TracksTargetConfig(norm="none", upsample=1), GRID)(batch)
    assert torch.equal(values, plain) and torch.all(plain_weight == 1)


def test_motion_weights_keep_invisible_tokens_at_zero_and_average_one_plus_w():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 6, 4, 2, generator=g) * 3
    visible = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1, 1]], dtype=torch.float32)
    weight = motion_weights(pixels, visible, 2.0)
    assert torch.all(weight[visible == 0] == 0) and torch.all(weight[visible == 1] > 1)
    assert weight[visible == 1].mean().item() == pytest.approx(3.0)
    # An all-static batch: every token keeps its weight (no 0 / 0).
    assert torch.equal(motion_weights(torch.zeros(2, 6, 4, 2), visible, 2.0), visible)
    assert torch.equal(motion_weights(torch.zeros(1, 3, 4, 2), None, 2.0), torch.ones(1, 3))


def test_the_motion_weighted_loss_stays_a_weighted_mean():
    target = TracksTarget(TracksTargetConfig(norm="none", upsample=1, motion_weight=2.0), GRID)
    values, weight = target({"tracks": _right_column_moves(), "track_visible": _visible()})
    masked_idx = torch.tensor([[0, 2, 5, 8]])  # static, moving, moving, moving
    hidden = values[0, masked_idx[0]]
    # The same error on every token: the loss is that error, whatever the weights.
    assert masked_mse(hidden[None] + 0.5, values, masked_idx, weight).item() == \
        pytest.approx(0.25)
    # Error 1 on the static token only: its weight (1) over the sum (1 + 3 * 7).
    shifted = hidden.clone()
    shifted[0] += 1.0
    assert weight[0, [0, 2, 5, 8]].tolist() == [1.0, 7.0, 7.0, 7.0]
    assert masked_mse(shifted[None], values, masked_idx, weight).item() == \
        pytest.approx(1.0 / 22)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    (["targets.tracks.horizons=[1]"], r"targets\.tracks\.horizons: each horizon .* >= 2"),
    (["targets.tracks.horizons=[2,2]"], r"targets\.tracks\.horizons: has duplicates"),
    (["targets.tracks.horizons=[2]", "targets.tracks.windows=official"],
     r"targets\.tracks\.horizons: needs targets\.tracks\.windows: tubelet, got 'official'"),
    (["targets.tracks.horizons=[2]", "targets.tracks.norm=patch"],
     r"targets\.tracks\.horizons: needs targets\.tracks\.norm in .*got 'patch'"),
    (["targets.tracks.horizons=[2]", "targets.tracks.norm=patch_mean"],
     r"targets\.tracks\.horizons: needs targets\.tracks\.norm in .*got 'patch_mean'"),
    (["targets.tracks.horizons=[4]", "data.frames=8"],
     r"targets\.tracks\.horizons: horizons \[4\] span .* \[8\] frames.*data\.frames = 8"),
    (["targets.tracks.motion_weight=-1"], r"targets\.tracks\.motion_weight: must be a finite"),
])
def test_config_errors_name_the_key(overrides, message):
    base = ["targets.names=[pixel,tracks]", "data.frames=16"]
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, overrides=base + overrides)


def test_a_target_built_without_a_validated_config_refuses_too():
    with pytest.raises(ConfigError, match=r"targets\.tracks\.horizons: needs .*norm"):
        TracksTarget(TracksTargetConfig(norm="patch", horizons=[2]), GRID)
    with pytest.raises(ConfigError, match=r"targets\.tracks\.horizons: needs .*windows"):
        TracksTarget(TracksTargetConfig(windows="official", horizons=[2]), GRID)


def test_valid_options_load():
    cfg = load_config(PretrainConfig, overrides=[
        "targets.names=[pixel,tracks]", "data.frames=16", "targets.tracks.horizons=[2,7]",
        "targets.tracks.motion_weight=1.5", "targets.tracks.norm=scale"])
    assert (cfg.targets.tracks.horizons, cfg.targets.tracks.motion_weight) == ([2, 7], 1.5)


# -- training -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("horizon-videos")
    return make_synthetic_dataset(root, num_train=2, num_val=0, frames=16, size=32, seed=0)


@pytest.mark.parametrize(("option", "head"), [("targets.tracks.horizons=[2,3]", 24),
                                              ("targets.tracks.motion_weight=1.0", 8),
                                              ("targets.tracks.queries=every_tubelet", 8)])
def test_two_pretraining_steps_with_each_option(videos, tmp_path, option, head):
    from motionmae.train.pretrain import pretrain

    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={out}", option,
        "targets.names=[pixel,tracks]", "masking.kind=motion", "data.frames=8",
        "data.stride=2", "data.size=32", "data.workers=0", "model.depth=1",
        "model.decoder_depth=1", "run.batch_size=2", "run.steps=2", "run.epochs=null",
        "run.precision=fp32", "run.device=cpu", "run.log_every=1"])
    result = pretrain(cfg)
    assert result.state.step == 2
    record = result.history[-1]
    assert np.isfinite(record["loss/tracks"]) and record["skipped_steps"] == 0
    weights = [load_file(path) for path in Path(out).rglob("*.safetensors")]
    heads = {tuple(w[key].shape) for w in weights for key in w
             if key.endswith("tracks.head.weight")}
    assert heads and {shape[0] for shape in heads} == {head}


# -- motion relative to the scene ---------------------------------------------------------------


def _object_on_a_panning_scene(batch=1):
    """The scene pans (1, -0.5) px per frame; patch column 2 (a third of the points, not the
    median) moves (3, 1) px per frame."""
    return _field_tracks(lambda p: torch.where(p[:, :1] > 30, torch.tensor([3.0, 1.0]),
                                               torch.tensor([1.0, -0.5])), batch=batch)


def test_relative_motion_removes_the_scenes_translation():
    cfg = TracksTargetConfig(norm="none", upsample=1, relative=True)
    target = TracksTarget(cfg, GRID)
    values, _ = target({"tracks": _object_on_a_panning_scene(), "track_visible": _visible()})
    assert target.dim == 4
    own, relative = values[0].view(GRID.t, GRID.h, GRID.w, 2, 2).unbind(dim=3)
    # Over each 2-frame tubelet window: own motion 2 v, relative 2 (v - v_scene).
    torch.testing.assert_close(own[..., 2, :], torch.tensor([6.0, 2.0]).expand(4, 4, 2))
    torch.testing.assert_close(own[..., :2, :], torch.tensor([2.0, -1.0]).expand(4, 4, 2, 2))
    torch.testing.assert_close(relative[..., 2, :], torch.tensor([4.0, 3.0]).expand(4, 4, 2))
    assert torch.all(relative[..., :2, :] == 0)
    # A pure pan has no relative motion at all.
    pan, _ = target({"tracks": _translation([1.0, -0.5]), "track_visible": _visible()})
    assert torch.all(pan.view(-1, 2, 2)[:, 1] == 0)


def test_relative_motion_is_normalised_by_its_own_batch_rms():
    cfg = TracksTargetConfig(norm="batch", upsample=2, relative=True, rms_floor=0.01)
    target = TracksTarget(cfg, GRID)
    values, _ = target({"tracks": _object_on_a_panning_scene(batch=2),
                        "track_visible": _visible(batch=2)})
    own, relative = values.view(2, GRID.num_tokens, 2, target.points * 2).unbind(dim=2)
    assert own.square().mean().item() == pytest.approx(1.0, rel=1e-5)
    assert relative.square().mean().item() == pytest.approx(1.0, rel=1e-5)
    plain = TracksTarget(TracksTargetConfig(norm="batch", upsample=2, rms_floor=0.01), GRID)
    alone, _ = plain({"tracks": _object_on_a_panning_scene(batch=2),
                      "track_visible": _visible(batch=2)})
    torch.testing.assert_close(own, alone)  # the tokens' own channels are unchanged


def test_relative_motion_needs_a_norm_that_keeps_a_tokens_own_motion():
    with pytest.raises(ConfigError, match=r"targets\.tracks\.relative: needs targets\.tracks"
                                          r"\.norm in \['none', 'scale', 'batch'\], got 'patch'"):
        load_config(PretrainConfig, overrides=["targets.names=[tracks]",
                                               "targets.tracks.norm=patch",
                                               "targets.tracks.relative=true"])
