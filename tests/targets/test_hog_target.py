import pytest
import torch

from motionmae.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig, TargetsConfig
from motionmae.targets import HogTarget, HogTargetConfig, Target, build_targets
from motionmae.targets.hog import hog_cells
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=4, height=32, width=48)  # t=2, h=2, w=3


def _smooth_image(seed, size=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, size, size, generator=g)
    return torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def test_vertical_edge_votes_in_bin_zero_and_flat_cells_are_zero():
    image = torch.zeros(1, 1, 32, 32)
    image[..., 12:] = 1.0  # a vertical edge between columns 11 and 12: horizontal gradient
    hist = hog_cells(image, bins=9, cell=8)  # [1, 9, 4, 4]
    assert hist.shape == (1, 9, 4, 4)
    edge = hist[0, :, :, 1]  # cells of columns 8..15 hold the edge
    torch.testing.assert_close(edge, torch.zeros_like(edge).index_fill_(0, torch.tensor([0]), 1))
    flat = hist[0, :, :, [0, 2, 3]]
    assert flat.abs().max() == 0


def test_horizontal_edge_splits_between_the_bins_around_90_degrees():
    image = torch.zeros(1, 1, 32, 32)
    image[..., 12:, :] = 1.0
    hist = hog_cells(image, bins=9, cell=8)[0, :, 1, 0]  # 90 deg = bin position 4.5
    torch.testing.assert_close(hist[4], hist[5])
    assert hist[[0, 1, 2, 3, 6, 7, 8]].abs().max() < 1e-6 and hist[4] > 0.7


def test_flat_image_gives_zeros():
    hist = hog_cells(torch.full((2, 1, 16, 16), 0.3), bins=9, cell=8)
    assert torch.isfinite(hist).all() and hist.abs().max() == 0


def test_rotating_by_90_degrees_shifts_the_bins_by_half():
    bins = 8
    image = _smooth_image(0)
    hist = hog_cells(image, bins=bins, cell=8)
    rotated = hog_cells(torch.rot90(image, 1, dims=(-2, -1)), bins=bins, cell=8)
    expected = torch.rot90(torch.roll(hist, bins // 2, dims=1), 1, dims=(-2, -1))
    torch.testing.assert_close(rotated, expected, atol=1e-4, rtol=1e-4)
    norms = torch.linalg.vector_norm(hist, dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def _normalised_clip(pixels):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (pixels - mean) / std


def test_target_layout_uses_each_tubelets_first_frame_per_channel():
    target = HogTarget(HogTargetConfig(), GRID, IMAGENET_MEAN, IMAGENET_STD)
    assert target.dim == 2 * 2 * 3 * 9
    g = torch.Generator().manual_seed(1)
    pixels = torch.rand(2, 3, GRID.frames, GRID.height, GRID.width, generator=g)
    values, weight = target({"clip": _normalised_clip(pixels)})
    assert weight is None and values.shape == (2, GRID.num_tokens, target.dim)
    # token (t=1, h=1, w=2), cell (1, 0), channel 2 == HOG of frame 2, channel 2 there
    cells = hog_cells(pixels[1:2, 2:3, 2], bins=9, cell=8)  # [1, 9, 4, 6]
    token = (1 * GRID.h + 1) * GRID.w + 2
    per_token = values[1, token].view(2, 2, 3, 9)
    torch.testing.assert_close(per_token[1, 0, 2], cells[0, :, 3, 4], atol=1e-5, rtol=1e-5)
    # the second frame of each tubelet does not matter
    pixels[:, :, 1::2] = torch.rand(2, 3, GRID.frames // 2, GRID.height, GRID.width)
    again, _ = target({"clip": _normalised_clip(pixels)})
    torch.testing.assert_close(again, values)


def test_cell_must_divide_the_patch_and_registry_builds_hog():
    with pytest.raises(ValueError, match="cell"):
        HogTarget(HogTargetConfig(cell=6), GRID, IMAGENET_MEAN, IMAGENET_STD)
    targets = build_targets(TargetsConfig(names=["hog"], hog=HogTargetConfig(bins=6, cell=4)),
                            GRID, DataConfig())
    hog = targets["hog"]
    assert isinstance(hog, Target)
    assert (hog.name, hog.dim, hog.weight) == ("hog", 4 * 4 * 3 * 6, 1.0)
