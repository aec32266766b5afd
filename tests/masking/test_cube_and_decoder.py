"""Cube masking (MaskFeat) and decoder-side masking (VideoMAE v2 running cell)."""

import pytest
import torch

from motionmae.config import MaskingConfig, PretrainConfig, load_config
from motionmae.masking import (
    DecoderMask,
    LearnedMask,
    LearnedSampler,
    build_mask_generator,
    cube_mask,
    random_mask,
    running_cell,
    tube_mask,
)
from motionmae.masking.decoder import num_decoded
from motionmae.targets import m3traj_dim, masked_mse
from motionmae.tokens import TokenGrid, mask_to_indices
from motionmae.train.pretrain import PretrainTask

GRID = TokenGrid(frames=16, height=96, width=96)  # t=8, h=w=6: L=288


def _time_neighbour_hidden(mask, grid=GRID):
    """Fraction of hidden tokens whose token in the next tubelet slice is hidden too."""
    m = mask.view(mask.shape[0], grid.t, grid.spatial)
    both = (m[:, 1:] & m[:, :-1]).sum()
    return float(both / m[:, :-1].sum())


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_cube_mask_keeps_the_tube_count_in_every_clip(ratio):
    mask = cube_mask(6, GRID, ratio, torch.Generator().manual_seed(0))
    assert mask.shape == (6, GRID.num_tokens) and mask.dtype == torch.bool
    assert torch.all((~mask).sum(dim=1) == GRID.num_visible(ratio))


def test_cube_mask_is_blocks_in_space_and_time():
    cube = cube_mask(16, GRID, 0.5, torch.Generator().manual_seed(1))
    rand = random_mask(16, GRID, 0.5, torch.Generator().manual_seed(1))
    assert _time_neighbour_hidden(rand) == pytest.approx(0.5, abs=0.05)
    assert _time_neighbour_hidden(cube) > 0.75
    # unlike tubes, blocks start and end in time: slices differ
    slices = cube.view(16, GRID.t, GRID.spatial)
    assert not torch.all(slices == slices[:, :1])
    # and in space a hidden token's right neighbour is mostly hidden too
    grid = cube.view(16, GRID.t, GRID.h, GRID.w)
    right = float((grid[..., 1:] & grid[..., :-1]).sum() / grid[..., :-1].sum())
    assert right > 0.75


def test_cube_mask_is_seeded_and_built_from_the_config():
    a = cube_mask(4, GRID, 0.9, torch.Generator().manual_seed(7))
    b = cube_mask(4, GRID, 0.9, torch.Generator().manual_seed(7))
    c = cube_mask(4, GRID, 0.9, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    generate = build_mask_generator(MaskingConfig(kind="cube", ratio=0.9), GRID)
    clip = torch.zeros(3, 3, GRID.frames, GRID.height, GRID.width)
    mask = generate({"clip": clip}, torch.Generator().manual_seed(0))
    assert torch.all((~mask).sum(dim=1) == generate.num_visible)


def test_learned_kind_builds_a_view_of_a_trainable_sampler():
    generator = build_mask_generator(MaskingConfig(kind="learned", ratio=0.75), GRID)
    assert isinstance(generator, LearnedMask)
    assert isinstance(generator.sampler, LearnedSampler)  # the pretraining task trains it
    assert generator.num_visible == GRID.num_visible(0.75)


# ------------------------------------------------------------------ decoder masking


def test_running_cell_decodes_every_position_in_n_of_4_slices():
    for ratio, keep in ((0.5, 2), (0.75, 1), (0.25, 3)):
        cell = running_cell(GRID, ratio).view(GRID.t, GRID.h, GRID.w)
        assert torch.all(cell.sum(dim=0) == keep * GRID.t // 4)
        # per slice, each 2x2 cell keeps `keep` positions, and the pattern moves with t
        per_cell = cell.view(GRID.t, GRID.h // 2, 2, GRID.w // 2, 2).sum(dim=(2, 4))
        assert torch.all(per_cell == keep)
        assert not torch.equal(cell[0], cell[1])


def test_with_tube_masks_the_decoded_tokens_are_exactly_the_running_cell():
    mask = tube_mask(4, GRID, 0.9, torch.Generator().manual_seed(0))
    num_visible = GRID.num_visible(0.9)
    _, masked_idx = mask_to_indices(mask, num_visible)
    decoded = DecoderMask(GRID, 0.5)(masked_idx, torch.Generator().manual_seed(0))
    assert decoded.shape == (4, num_decoded(masked_idx.shape[1], 0.5))
    cell = running_cell(GRID, 0.5)
    for row in range(4):
        expected = masked_idx[row][cell[masked_idx[row]]]
        assert torch.equal(decoded[row], expected)


def test_with_any_mask_the_count_is_fixed_and_cell_tokens_come_first():
    mask = random_mask(8, GRID, 0.75, torch.Generator().manual_seed(1))
    _, masked_idx = mask_to_indices(mask, GRID.num_visible(0.75))
    decoded = DecoderMask(GRID, 0.5)(masked_idx, torch.Generator().manual_seed(1))
    d = num_decoded(masked_idx.shape[1], 0.5)
    assert decoded.shape == (8, d)
    assert torch.all(decoded.diff(dim=1) > 0)
    cell = running_cell(GRID, 0.5)
    for row in range(8):
        assert set(decoded[row].tolist()) <= set(masked_idx[row].tolist())
        in_cell = int(cell[masked_idx[row]].sum())
        assert int(cell[decoded[row]].sum()) == min(in_cell, d)


def _tracks(batch, grid):
    ys, xs = torch.meshgrid(torch.arange(grid.h) * 16.0 + 7.5,
                            torch.arange(grid.w) * 16.0 + 7.5, indexing="ij")
    points = torch.stack([xs, ys], dim=-1).reshape(-1, 2)
    steps = torch.arange(grid.frames, dtype=torch.float32).view(-1, 1, 1)
    tracks = points + steps * torch.tensor([1.5, -0.5])
    return tracks.expand(batch, -1, -1, -1).clone()


@pytest.mark.parametrize("kind", ["tube", "learned"])
def test_every_target_trains_on_the_decoded_subset(kind):
    """Pixel, HOG, tracks and M3Video targets with decoder masking: the decoders see V + D
    tokens and each loss is the (token-weighted) masked MSE over the D decoded tokens."""
    cfg = load_config(PretrainConfig, overrides=[
        "data.frames=8", "data.size=64", "model.depth=1", "model.decoder_depth=1",
        "targets.names=[pixel,hog,tracks,m3traj]", f"masking.kind={kind}", "masking.ratio=0.75",
        "masking.decoder_ratio=0.5"])
    torch.manual_seed(0)
    task = PretrainTask(cfg)
    grid = task.grid
    batch = {"clip": torch.randn(2, 3, grid.frames, grid.height, grid.width),
             "tracks": _tracks(2, grid),
             "track_visible": torch.ones(2, grid.frames, grid.spatial, dtype=torch.bool),
             "m3traj": torch.randn(2, grid.num_tokens, m3traj_dim(cfg.targets.m3traj)),
             "m3traj_weight": (torch.rand(2, grid.num_tokens) > 0.3).float()}
    seen = []
    hook = task.model.decoders["hog"].blocks[0].register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[1]))
    total, parts = task.loss(task.model, batch, torch.Generator().manual_seed(3))
    hook.remove()
    assert torch.isfinite(total)

    generator = torch.Generator().manual_seed(3)  # the same draws, step by step
    mask = (task.sampler(batch, generator).mask if task.sampler is not None
            else task.masking(batch, generator))
    visible_idx, masked_idx = mask_to_indices(mask, task.masking.num_visible)
    decoded = task.decoder_mask(masked_idx, generator)
    d = num_decoded(masked_idx.shape[1], 0.5)
    assert decoded.shape == (2, d)
    assert seen == [visible_idx.shape[1] + d]  # not L: the decoder is cut
    with torch.no_grad():
        predictions = task.model(batch["clip"], visible_idx, decoded)
    for name, target in task.targets.items():
        values, weight = target(batch)
        assert predictions[name].shape == (2, d, target.dim)
        expected = masked_mse(predictions[name].float(), values, decoded, weight)
        torch.testing.assert_close(parts[f"loss/{name}"], expected, rtol=1e-5, atol=1e-6)
    if kind == "learned":
        assert "sampler/reward" in parts
