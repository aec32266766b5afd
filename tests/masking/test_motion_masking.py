import pytest
import torch

from motionmae.config import MaskingConfig
from motionmae.masking import (
    MotionAwareMask,
    MotionMaskingConfig,
    build_mask_generator,
    motion_aware_mask,
    motion_per_position,
)
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=8, height=64, width=64)  # t=4, h=w=4: 16 positions per slice


def _left_moves(batch=3, grid=GRID, speed=2.0):
    """Tracks at the patch centres; the left half of the columns moves right, the rest stays."""
    ys, xs = torch.meshgrid(torch.arange(grid.h) * 16.0 + 7.5, torch.arange(grid.w) * 16.0 + 7.5,
                            indexing="ij")
    points = torch.stack([xs, ys], dim=-1).reshape(-1, 2)
    moving = (torch.arange(grid.w) < grid.w // 2).repeat(grid.h)  # [N], row-major (h, w)
    frames = torch.arange(grid.frames, dtype=torch.float32).view(-1, 1, 1)
    tracks = points + frames * speed * torch.stack([moving.float(), torch.zeros(grid.spatial)], 1)
    return tracks.expand(batch, -1, -1, -1).clone(), moving


def _visible_positions(mask, grid=GRID):
    return ~mask.view(mask.shape[0], grid.t, grid.spatial)[:, 0]


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_rho_one_keeps_only_moving_positions_and_rho_zero_only_static(ratio):
    tracks, moving = _left_moves()
    v = GRID.num_visible_spatial(ratio)
    for rho, wanted in ((1.0, moving), (0.0, ~moving)):
        mask = motion_aware_mask(tracks, None, GRID, ratio, rho, torch.Generator().manual_seed(0))
        kept = _visible_positions(mask)
        assert torch.all(kept.sum(dim=1) == v)
        assert not torch.any(kept & ~wanted), rho


def test_exact_count_tube_shape_and_share_from_the_high_half():
    tracks, moving = _left_moves(batch=5)
    ratio, rho = 0.5, 0.75  # V = 8, 6 from the moving half, 2 from the static half
    mask = motion_aware_mask(tracks, None, GRID, ratio, rho, torch.Generator().manual_seed(3))
    assert mask.shape == (5, GRID.num_tokens) and mask.dtype == torch.bool
    assert torch.all((~mask).sum(dim=1) == GRID.num_visible(ratio))
    slices = mask.view(5, GRID.t, GRID.spatial)
    assert torch.all(slices == slices[:, :1])
    kept = _visible_positions(mask)
    assert torch.all((kept & moving).sum(dim=1) == 6)
    assert torch.all((kept & ~moving).sum(dim=1) == 2)


def test_a_too_small_bin_is_topped_up_from_the_other():
    tracks, moving = _left_moves(batch=2)
    ratio = 0.25  # V = 12 > 8 positions per bin
    for rho, high_count in ((1.0, 8), (0.0, 4)):
        mask = motion_aware_mask(tracks, None, GRID, ratio, rho, torch.Generator().manual_seed(1))
        kept = _visible_positions(mask)
        assert torch.all(kept.sum(dim=1) == 12)
        assert torch.all((kept & moving).sum(dim=1) == high_count)


def test_seeded_generator_is_deterministic_and_rows_differ():
    tracks, _ = _left_moves(batch=8)
    a = motion_aware_mask(tracks, None, GRID, 0.75, 0.5, torch.Generator().manual_seed(7))
    b = motion_aware_mask(tracks, None, GRID, 0.75, 0.5, torch.Generator().manual_seed(7))
    c = motion_aware_mask(tracks, None, GRID, 0.75, 0.5, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a}) > 1


def test_ties_are_broken_at_random_on_a_static_clip():
    tracks, _ = _left_moves(batch=64, speed=0.0)
    mask = motion_aware_mask(tracks, None, GRID, 0.75, 1.0, torch.Generator().manual_seed(0))
    counts = _visible_positions(mask).sum(dim=0)  # how often each position was kept
    assert torch.all(counts > 0)  # not always the first half by index


def test_motion_uses_only_steps_visible_at_both_ends():
    tracks = torch.zeros(1, 4, 2, 2)
    tracks[0, :, 0, 0] = torch.tensor([0.0, 1.0, 11.0, 12.0])  # one 10 px jump at step 1
    visible = torch.ones(1, 4, 2, dtype=torch.bool)
    torch.testing.assert_close(motion_per_position(tracks), torch.tensor([[4.0, 0.0]]))
    visible[0, 2, 0] = False  # hides steps 1 and 2
    torch.testing.assert_close(motion_per_position(tracks, visible), torch.tensor([[1.0, 0.0]]))
    visible[0, :, 1] = False  # never visible: 0
    assert motion_per_position(tracks, visible)[0, 1] == 0


def test_visibility_changes_the_ranking():
    tracks, moving = _left_moves(batch=1)
    visible = torch.ones(1, GRID.frames, GRID.spatial, dtype=torch.bool)
    visible[:, 1::2] = ~moving  # the moving points are never visible at two frames in a row
    mask = motion_aware_mask(tracks, visible, GRID, 0.5, 1.0, torch.Generator().manual_seed(0))
    # every position now has motion 0: the high bin is random, not the moving half
    gen = MotionAwareMask(MotionMaskingConfig(rho=1.0), GRID, 0.5)
    assert torch.equal(mask, gen({"tracks": tracks, "track_visible": visible},
                                 torch.Generator().manual_seed(0)))
    assert not torch.equal(_visible_positions(mask)[0], moving)


def test_generator_from_config_and_missing_tracks():
    generate = build_mask_generator(MaskingConfig(kind="motion", ratio=0.75,
                                                  motion=MotionMaskingConfig(rho=1.0)), GRID)
    assert isinstance(generate, MotionAwareMask)
    assert generate.num_visible == GRID.num_visible(0.75)
    tracks, moving = _left_moves(batch=2)
    mask = generate({"tracks": tracks, "clip": torch.zeros(2)}, torch.Generator().manual_seed(0))
    assert mask.device == tracks.device
    assert torch.all((~mask).sum(dim=1) == generate.num_visible)
    assert not torch.any(_visible_positions(mask) & ~moving)
    with pytest.raises(KeyError, match=r"masking\.kind=motion needs point tracks"):
        generate({"clip": torch.zeros(2, 3, 8, 64, 64)})
    with pytest.raises(ValueError, match="tracks"):
        generate({"tracks": torch.zeros(2, 8, 5, 2)})
