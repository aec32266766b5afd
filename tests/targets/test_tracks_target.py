import dataclasses

import pytest
import torch
import torch.nn.functional as F
from trackmae_reference import official_tracks_target

from motionmae.config import ConfigError, DataConfig, TargetsConfig
from motionmae.motion import patch_center_queries, patch_grid_queries
from motionmae.targets import Target, TracksTarget, TracksTargetConfig, build_targets
from motionmae.targets.track_horizons import tubelet_windows
from motionmae.targets.tracks import upsample_matrix
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=8, height=64, width=48)  # t=4, h=4, w=3


def _centres(grid=GRID):
    return torch.from_numpy(patch_center_queries(grid.height, grid.width, grid.patch))[:, 1:]


def _field_tracks(velocity, grid=GRID, batch=1):
    """Points moving with a constant per-frame velocity field ``velocity(p) [N, 2]``."""
    p = _centres(grid)
    frames = torch.arange(grid.frames, dtype=torch.float32).view(1, -1, 1, 1)
    tracks = p + frames * velocity(p)
    return tracks.expand(batch, -1, -1, -1).clone()


def _visible(grid=GRID, batch=1):
    return torch.ones(batch, grid.frames, grid.spatial, dtype=torch.bool)


def test_windows_follow_tubelets_and_the_last_one_ends_at_the_last_frame():
    assert tubelet_windows(16, 2) == ([0, 2, 4, 6, 8, 10, 12, 13], [2, 4, 6, 8, 10, 12, 14, 15])
    assert tubelet_windows(8, 4) == ([0, 3], [4, 7])
    assert tubelet_windows(2, 2) == ([0], [1])


@pytest.mark.parametrize("upsample", [1, 2, 3])
def test_uniform_translation_gives_tubelet_times_velocity(upsample):
    target = TracksTarget(TracksTargetConfig(norm="none", upsample=upsample), GRID)
    tracks = _field_tracks(lambda p: torch.tensor([1.5, -0.5]).expand_as(p), batch=2)
    values, weight = target({"tracks": tracks, "track_visible": _visible(batch=2)})
    assert values.shape == (2, GRID.num_tokens, upsample**2 * 2) == (2, GRID.num_tokens,
                                                                       target.dim)
    expected = torch.tensor([1.5, -0.5]) * GRID.tubelet
    torch.testing.assert_close(values.view(2, GRID.num_tokens, -1, 2),
                               expected.expand(2, GRID.num_tokens, upsample**2, 2))
    assert weight.shape == (2, GRID.num_tokens) and torch.all(weight == 1)


@pytest.mark.parametrize("upsample", [2, 3])
def test_upsampling_reproduces_a_linear_field_exactly_at_the_sub_patch_centres(upsample):
    a = torch.tensor([[0.01, 0.02], [-0.03, 0.015]])
    b = torch.tensor([0.3, -0.2])
    target = TracksTarget(TracksTargetConfig(norm="none", upsample=upsample), GRID)
    values, _ = target({"tracks": _field_tracks(lambda p: p @ a.T + b),
                        "track_visible": _visible()})
    k = upsample**2
    sub = patch_grid_queries(GRID.height, GRID.width, GRID.patch, upsample)[:, 1:]
    sub = torch.from_numpy(sub).view(GRID.spatial, k, 2)  # token order, sub-points row-major
    expected = (GRID.tubelet * (sub @ a.T + b)).expand(GRID.t, -1, -1, -1)
    torch.testing.assert_close(values.view(GRID.t, GRID.spatial, k, 2), expected,
                               atol=1e-4, rtol=1e-5)


def test_upsample_matrix_rows_sum_to_one_and_hit_the_centres():
    m = upsample_matrix(4, 2)
    torch.testing.assert_close(m.sum(dim=1), torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(m @ torch.arange(4.0, dtype=torch.float64),
                               torch.tensor([-0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25],
                                            dtype=torch.float64))
    assert torch.equal(upsample_matrix(1, 3), torch.ones(3, 1, dtype=torch.float64))


def test_patch_norm_is_zero_mean_unit_std_per_token_and_coordinate():
    g = torch.Generator().manual_seed(0)
    tracks = torch.randn(3, GRID.frames, GRID.spatial, 2, generator=g).cumsum(dim=1) * 3
    target = TracksTarget(TracksTargetConfig(norm="patch", upsample=2), GRID)
    values, _ = target({"tracks": tracks, "track_visible": _visible(batch=3)})
    grouped = values.view(3, GRID.num_tokens, 4, 2)
    torch.testing.assert_close(grouped.mean(dim=2), torch.zeros(3, GRID.num_tokens, 2),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped.std(dim=2), torch.ones(3, GRID.num_tokens, 2),
                               atol=1e-3, rtol=0)


def test_patch_norm_of_a_rigid_translation_is_zero_and_scale_divides():
    tracks = _field_tracks(lambda p: torch.tensor([2.0, 1.0]).expand_as(p))
    batch = {"tracks": tracks, "track_visible": _visible()}
    patch, _ = TracksTarget(TracksTargetConfig(norm="patch"), GRID)(batch)
    assert torch.isfinite(patch).all() and patch.abs().max() == 0
    none, _ = TracksTarget(TracksTargetConfig(norm="none"), GRID)(batch)
    scaled, _ = TracksTarget(TracksTargetConfig(norm="scale", scale=4.0), GRID)(batch)
    torch.testing.assert_close(scaled, none / 4.0)


def test_patch_norm_needs_more_than_one_point():
    with pytest.raises(ValueError, match="upsample >= 2"):
        TracksTarget(TracksTargetConfig(norm="patch", upsample=1), GRID)


def test_invisible_window_end_zeroes_the_token_and_its_interpolation_neighbours():
    tracks = _field_tracks(lambda p: torch.zeros_like(p))
    visible = _visible()
    point = 1 * GRID.w + 1  # patch (1, 1), the centre of a 4 x 3 grid
    visible[0, 4, point] = False  # frame 4 ends tubelet 1's window and starts tubelet 2's
    visible[0, 1, point] = False  # frame 1 is inside tubelet 0's window: not an end point
    for upsample, expected_bad in ((1, {(1, 1)}),
                                   (2, {(i, j) for i in (0, 1, 2) for j in (0, 1, 2)})):
        target = TracksTarget(TracksTargetConfig(norm="none", upsample=upsample), GRID)
        _, weight = target({"tracks": tracks, "track_visible": visible})
        weight = weight.view(GRID.t, GRID.h, GRID.w)
        for t in range(GRID.t):
            for i in range(GRID.h):
                for j in range(GRID.w):
                    bad = t in (1, 2) and (i, j) in expected_bad
                    assert weight[t, i, j] == (0.0 if bad else 1.0), (upsample, t, i, j)


def test_without_visibility_there_are_no_weights():
    target = TracksTarget(TracksTargetConfig(norm="patch", use_visibility=False), GRID)
    tracks = _field_tracks(lambda p: 0.1 * p)
    values, weight = target({"tracks": tracks})
    assert weight is None and values.shape == (1, GRID.num_tokens, 8)


def test_missing_or_misshapen_tracks_are_named():
    target = TracksTarget(TracksTargetConfig(), GRID)
    with pytest.raises(KeyError, match="tracks"):
        target({"clip": torch.zeros(1)})
    with pytest.raises(ValueError, match="batch\\['tracks'\\]"):
        target({"tracks": torch.zeros(1, GRID.frames, GRID.spatial + 1, 2)})
    with pytest.raises(KeyError, match="track_visible"):
        target({"tracks": torch.zeros(1, GRID.frames, GRID.spatial, 2)})


@pytest.mark.parametrize(("norm", "dim"), [("patch", 8), ("patch_mean", 10), ("batch", 8)])
def test_registry_builds_the_tracks_target(norm, dim):
    cfg = TargetsConfig(names=["pixel", "tracks"],
                        tracks=TracksTargetConfig(weight=0.5, norm=norm))
    targets = build_targets(cfg, GRID, DataConfig())
    tracks = targets["tracks"]
    assert isinstance(tracks, Target)
    assert (tracks.name, tracks.dim, tracks.weight) == ("tracks", dim, 0.5)


# -- what the patch norm loses (issue 12) ------------------------------------------------------


def _zoom_plus(shift):
    """A zoom about the frame centre plus a uniform ``shift`` px/frame."""
    centre = torch.tensor([GRID.width / 2, GRID.height / 2])
    return lambda p: 0.02 * (p - centre) + torch.tensor(shift)


def test_patch_norm_cannot_tell_opposite_translations_apart():
    batch = {"tracks": torch.cat([_field_tracks(_zoom_plus([3.0, 1.0])),
                                  _field_tracks(_zoom_plus([-3.0, -1.0]))]),
             "track_visible": _visible(batch=2)}
    patch, _ = TracksTarget(TracksTargetConfig(norm="patch"), GRID)(batch)
    assert patch.abs().max() > 0.5  # the zoom's local gradient survives ...
    torch.testing.assert_close(patch[0], patch[1], atol=1e-4, rtol=0)  # ... the motion doesn't
    for norm in ("none", "scale", "batch", "patch_mean"):
        values, _ = TracksTarget(TracksTargetConfig(norm=norm), GRID)(batch)
        assert (values[0] - values[1]).abs().max() > 0.5, norm


def test_patch_norm_blows_tracker_noise_up_to_unit_variance_and_batch_does_not():
    g = torch.Generator().manual_seed(1)
    static = _field_tracks(lambda p: torch.zeros_like(p), batch=4)
    noisy = static + 0.01 * torch.randn(static.shape, generator=g)
    batch = {"tracks": noisy, "track_visible": _visible(batch=4)}
    pixels, _ = TracksTarget(TracksTargetConfig(norm="none"), GRID)(batch)
    assert pixels.abs().max() < 0.1
    patch, _ = TracksTarget(TracksTargetConfig(norm="patch"), GRID)(batch)
    # Each token's points spread by ~0.005 px; their z-scores have variance ~1 (a little less
    # where the 1e-6 px^2 eps is not small against the spread), 60x the pixels' RMS.
    per_token = patch.view(4, GRID.num_tokens, 4, 2).var(dim=2)
    assert 0.9 < per_token.median().item() <= 1.0
    assert patch.square().mean().sqrt() > 50 * pixels.square().mean().sqrt()
    moving = TracksTarget(TracksTargetConfig(norm="patch_mean"), GRID)(batch)[0]
    assert moving[..., -2:].abs().max() < 0.01  # the mean channels see the noise as noise
    floored, _ = TracksTarget(TracksTargetConfig(norm="batch", rms_floor=1.0), GRID)(batch)
    torch.testing.assert_close(floored, pixels)  # RMS ~0.01 px is below the 1 px floor


# -- norms that keep each token's own motion ----------------------------------------------------


@pytest.mark.parametrize("upsample", [2, 3])
def test_patch_mean_of_a_rigid_translation_is_its_displacement_over_scale(upsample):
    cfg = TracksTargetConfig(norm="patch_mean", upsample=upsample, scale=4.0)
    target = TracksTarget(cfg, GRID)
    assert target.dim == upsample**2 * 2 + 2
    tracks = torch.cat([_field_tracks(lambda p: torch.tensor([1.5, -0.5]).expand_as(p)),
                        _field_tracks(lambda p: torch.tensor([-1.5, 0.5]).expand_as(p))])
    values, _ = target({"tracks": tracks, "track_visible": _visible(batch=2)})
    assert values.shape == (2, GRID.num_tokens, target.dim)
    assert values[..., :-2].abs().max() < 1e-3  # float32 round-off of the interpolation
    d = torch.tensor([1.5, -0.5]) * GRID.tubelet / 4.0  # px per window / scale
    torch.testing.assert_close(values[0, :, -2:], d.expand(GRID.num_tokens, 2))
    torch.testing.assert_close(values[1, :, -2:], -d.expand(GRID.num_tokens, 2))


def test_patch_mean_keeps_patch_channels_and_appends_the_token_mean():
    g = torch.Generator().manual_seed(2)
    tracks = torch.randn(2, GRID.frames, GRID.spatial, 2, generator=g).cumsum(dim=1) * 3
    batch = {"tracks": tracks, "track_visible": _visible(batch=2)}
    patch, _ = TracksTarget(TracksTargetConfig(norm="patch"), GRID)(batch)
    both, _ = TracksTarget(TracksTargetConfig(norm="patch_mean", scale=2.0), GRID)(batch)
    pixels, _ = TracksTarget(TracksTargetConfig(norm="none"), GRID)(batch)
    torch.testing.assert_close(both[..., :-2], patch)
    torch.testing.assert_close(both[..., -2:],
                               pixels.view(2, GRID.num_tokens, 4, 2).mean(dim=2) / 2.0)


def test_batch_norm_divides_by_the_batch_rms_and_keeps_speed_differences():
    # Clip 0 moves (1.5, 2) px/frame, clip 1 three times as fast: windows of 2 frames.
    tracks = torch.cat([_field_tracks(lambda p: torch.tensor([1.5, 2.0]).expand_as(p)),
                        _field_tracks(lambda p: torch.tensor([4.5, 6.0]).expand_as(p))])
    target = TracksTarget(TracksTargetConfig(norm="batch", upsample=2), GRID)
    values, _ = target({"tracks": tracks, "track_visible": _visible(batch=2)})
    slow, fast = torch.tensor([3.0, 4.0]), torch.tensor([9.0, 12.0])
    rms = ((slow.square().sum() + fast.square().sum()) / 4).sqrt()  # over every value
    torch.testing.assert_close(values[0].view(-1, 4, 2), (slow / rms).expand(GRID.num_tokens,
                                                                            4, 2))
    torch.testing.assert_close(values[1], 3 * values[0])
    assert values.square().mean().item() == pytest.approx(1.0, rel=1e-5)


def test_batch_norm_is_invariant_to_scaling_every_track():
    g = torch.Generator().manual_seed(3)
    tracks = torch.randn(3, GRID.frames, GRID.spatial, 2, generator=g).cumsum(dim=1) * 3
    target = TracksTarget(TracksTargetConfig(norm="batch"), GRID)
    values, _ = target({"tracks": tracks, "track_visible": _visible(batch=3)})
    for factor in (0.5, 7.0):
        scaled, _ = target({"tracks": tracks * factor, "track_visible": _visible(batch=3)})
        torch.testing.assert_close(scaled, values, atol=1e-5, rtol=1e-5)


def test_batch_norm_floor_and_invalid_tokens():
    # Below the floor the divisor is the floor: 0.2 px per window stays 0.2 / 0.5.
    tracks = _field_tracks(lambda p: torch.tensor([0.1, 0.0]).expand_as(p))
    target = TracksTarget(TracksTargetConfig(norm="batch", rms_floor=0.5), GRID)
    values, _ = target({"tracks": tracks, "track_visible": _visible()})
    torch.testing.assert_close(values.view(-1, 2), torch.tensor([0.4, 0.0]).expand(
        GRID.num_tokens * 4, 2))
    # A lost point (weight 0) with a wild track does not count in the batch RMS.
    tracks = _field_tracks(lambda p: torch.tensor([1.5, 2.0]).expand_as(p))
    visible = _visible()
    tracks[0, 4:, 5] += 1000.0
    visible[0, 4:, 5] = False
    target = TracksTarget(TracksTargetConfig(norm="batch"), GRID)
    values, weight = target({"tracks": tracks, "track_visible": visible})
    assert 0 < weight.sum() < GRID.num_tokens
    kept = values[weight > 0].view(-1, 2)
    torch.testing.assert_close(kept, (torch.tensor([3.0, 4.0]) / 12.5**0.5).expand_as(kept))


def test_batch_rms_is_detached():
    target = TracksTarget(TracksTargetConfig(norm="batch"), GRID)
    tokens = torch.full((1, GRID.num_tokens, 4, 2), 3.0, requires_grad=True)
    rms = target.batch_rms(tokens)
    assert rms.ndim == 0 and not rms.requires_grad and rms.item() == 3.0


# -- TrackMAE's official windows and upsampling (issue 13) -------------------------------------


def test_official_windows_read_every_tubelet_th_frame_and_repeat_the_last():
    assert tubelet_windows(16, 2, "official") == ([0, 2, 4, 6, 8, 10, 12, 12],
                                                  [2, 4, 6, 8, 10, 12, 14, 14])
    assert tubelet_windows(8, 4, "official") == ([0, 0], [4, 4])
    assert tubelet_windows(2, 2, "official") == ([0], [1])
    with pytest.raises(ValueError, match="official"):
        tubelet_windows(8, 2, "offical")


def test_official_windows_repeat_the_last_tubelets_displacement():
    # x = f^2 (accelerating): windows [0,2], [2,4], [4,6] give 4, 12, 20 px; the last tubelet
    # repeats 20 (official) or measures [5, 7]: 49 - 25 = 24 (tubelet).
    frames = torch.arange(GRID.frames, dtype=torch.float32)
    tracks = _centres().expand(1, GRID.frames, -1, -1).clone()
    tracks[..., 0] += frames.square().view(1, -1, 1)
    batch = {"tracks": tracks, "track_visible": _visible()}
    for windows, expected in (("official", [4.0, 12.0, 20.0, 20.0]),
                              ("tubelet", [4.0, 12.0, 20.0, 24.0])):
        cfg = TracksTargetConfig(norm="none", windows=windows)
        values, _ = TracksTarget(cfg, GRID)(batch)
        dx = values.view(GRID.t, GRID.spatial, 4, 2)[..., 0]
        torch.testing.assert_close(dx, torch.tensor(expected).view(-1, 1, 1).expand_as(dx))


def test_align_corners_upsampling_matches_torch_interpolate():
    torch.testing.assert_close(upsample_matrix(2, 2, align_corners=True) @ torch.tensor(
        [0.0, 1.0], dtype=torch.float64), torch.tensor([0, 1 / 3, 2 / 3, 1], dtype=torch.float64))
    g = torch.Generator().manual_seed(4)
    for n, factor in ((2, 2), (4, 2), (3, 3), (14, 2)):
        field = torch.randn(1, 1, n, dtype=torch.float64, generator=g)
        expected = F.interpolate(field, size=n * factor, mode="linear", align_corners=True)
        torch.testing.assert_close(upsample_matrix(n, factor, align_corners=True) @ field[0, 0],
                                   expected[0, 0])


@pytest.mark.parametrize("grid", [GRID, TokenGrid(frames=16, height=64, width=64)],
                         ids=["8x64x48", "16x64x64"])
def test_official_settings_reproduce_trackmaes_targets(grid):
    g = torch.Generator().manual_seed(5)
    tracks = torch.randn(2, grid.frames, grid.spatial, 2, generator=g).cumsum(dim=1) * 2
    seen = tracks[:, ::grid.tubelet]  # the frames TrackMAE's tracker sees
    reference = official_tracks_target(seen, grid.h, grid.w, 2, norm="none")
    cfg = TracksTargetConfig(upsample=2, windows="official", upsample_mode="align_corners",
                             use_visibility=False)
    raw, _ = TracksTarget(dataclasses.replace(cfg, norm="none"), grid)({"tracks": tracks})
    torch.testing.assert_close(raw, reference.flatten(2), atol=1e-4, rtol=1e-5)
    # windows=official picks TrackMAE's patch norm divisor, std + 1e-6.
    patch, _ = TracksTarget(dataclasses.replace(cfg, norm="patch"), grid)({"tracks": tracks})
    torch.testing.assert_close(patch, official_tracks_target(seen, grid.h, grid.w).flatten(2),
                               atol=1e-3, rtol=1e-3)
    # The project's defaults differ on this random field.
    default, _ = TracksTarget(TracksTargetConfig(norm="none", use_visibility=False),
                              grid)({"tracks": tracks})
    assert (default - raw).abs().max() > 0.1


def test_align_corners_visibility_support_follows_its_own_weights():
    tracks = _field_tracks(lambda p: torch.zeros_like(p))
    visible = _visible()
    visible[0, 2, 0] = False  # patch (0, 0) at the end of tubelet 0's window
    cfg = TracksTargetConfig(norm="none", upsample_mode="align_corners")
    _, weight = TracksTarget(cfg, GRID)({"tracks": tracks, "track_visible": visible})
    bad = {(i, j) for i in range(GRID.h) for j in range(GRID.w)
           if weight.view(GRID.t, GRID.h, GRID.w)[0, i, j] == 0}
    # rows at 0, 3/7, 6/7, 9/7 ... of a 4-row grid: patches 0 and 1 read centre 0
    assert bad == {(0, 0), (0, 1), (1, 0), (1, 1)}


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("norm", "running", "targets.tracks.norm: must be one of"),
    ("windows", "every", "targets.tracks.windows: must be one of"),
    ("upsample_mode", "nearest", "targets.tracks.upsample_mode: must be one of"),
    ("rms_floor", 0.0, "targets.tracks.rms_floor: must be > 0"),
])
def test_config_errors_name_the_key(field, value, message):
    cfg = dataclasses.replace(TracksTargetConfig(), **{field: value})
    with pytest.raises(ConfigError, match=message):
        cfg.validate("targets.tracks")


def test_patch_mean_needs_more_than_one_point():
    with pytest.raises(ConfigError, match=r"targets\.tracks\.norm: patch_mean .*\.upsample >= 2"):
        TracksTargetConfig(norm="patch_mean", upsample=1).validate("targets.tracks")
    with pytest.raises(ValueError, match="upsample >= 2"):
        TracksTarget(TracksTargetConfig(norm="patch_mean", upsample=1), GRID)
