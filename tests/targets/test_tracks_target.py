import pytest
import torch

from motionmae.config import DataConfig, TargetsConfig, TracksTargetConfig
from motionmae.motion import patch_center_queries, patch_grid_queries
from motionmae.targets import Target, TracksTarget, build_targets
from motionmae.targets.tracks import tubelet_windows, upsample_matrix
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
    target = TracksTarget(TracksTargetConfig(use_visibility=False), GRID)
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


def test_registry_builds_the_tracks_target():
    cfg = TargetsConfig(names=["pixel", "tracks"], tracks=TracksTargetConfig(weight=0.5))
    targets = build_targets(cfg, GRID, DataConfig())
    tracks = targets["tracks"]
    assert isinstance(tracks, Target)
    assert (tracks.name, tracks.dim, tracks.weight) == ("tracks", 8, 0.5)
