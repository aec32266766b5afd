import pytest
import torch

from motionmae.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig, TargetsConfig
from motionmae.targets import (
    PixelTarget,
    PixelTargetConfig,
    Target,
    build_targets,
    denormalize_prediction,
    normalize_patches,
    patch_statistics,
)
from motionmae.tokens import TokenGrid, patchify, unpatchify

GRID = TokenGrid(frames=4, height=32, width=48)


def _clip(batch=2, seed=0):
    pixels = torch.rand(batch, 3, GRID.frames, GRID.height, GRID.width,
                        generator=torch.Generator().manual_seed(seed))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return pixels, (pixels - mean) / std


def test_patchify_unpatchify_round_trip():
    pixels, _ = _clip()
    tokens = patchify(pixels, GRID)
    assert tokens.shape == (2, GRID.num_tokens, GRID.patch_dim)
    assert torch.equal(unpatchify(tokens, GRID), pixels)
    # token 1 is (t=0, h=0, w=1): its first value is frame 0, row 0, column 16, channel 0
    assert tokens[0, 1, 0] == pixels[0, 0, 0, 0, GRID.patch]


def test_pixel_target_without_norm_recovers_the_pixels():
    pixels, clip = _clip()
    target = PixelTarget(PixelTargetConfig(norm_pix=False), GRID, IMAGENET_MEAN, IMAGENET_STD)
    values, weight = target({"clip": clip})
    assert weight is None and values.shape == (2, GRID.num_tokens, target.dim)
    torch.testing.assert_close(unpatchify(values, GRID), pixels, atol=1e-6, rtol=0)


def test_norm_pix_normalises_each_token_per_channel():
    pixels, clip = _clip()
    target = PixelTarget(PixelTargetConfig(norm_pix=True), GRID, IMAGENET_MEAN, IMAGENET_STD)
    values, _ = target({"clip": clip})
    grouped = values.unflatten(-1, (-1, 3))  # [B, L, tubelet*patch*patch, C]
    torch.testing.assert_close(grouped.mean(dim=2), torch.zeros(2, GRID.num_tokens, 3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped.std(dim=2), torch.ones(2, GRID.num_tokens, 3),
                               atol=1e-4, rtol=0)
    # with the statistics passed explicitly, the prediction goes back to the pixels
    mean, std = patch_statistics(target.pixels(clip), 3)
    restored = unpatchify(denormalize_prediction(values, mean, std, 3), GRID)
    torch.testing.assert_close(restored, pixels, atol=1e-5, rtol=0)


def test_norm_pix_matches_videomae_semantics():
    """VideoMAE: (t p0 p1) c groups, unbiased variance (its eps sits outside the sqrt)."""
    pixels, clip = _clip(batch=1)
    b, c, t, h, w = pixels.shape
    frames = pixels.permute(0, 2, 1, 3, 4)  # [B, T, C, H, W] like VideoMAE
    frames = frames.reshape(b, t // 2, 2, c, h // 16, 16, w // 16, 16)
    frames = frames.permute(0, 1, 4, 6, 2, 5, 7, 3).reshape(b, -1, 2 * 16 * 16, c)
    expected = (frames - frames.mean(dim=-2, keepdim=True)) / (
        frames.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    target = PixelTarget(PixelTargetConfig(), GRID, IMAGENET_MEAN, IMAGENET_STD)
    values, _ = target({"clip": clip})
    torch.testing.assert_close(values, expected.reshape(b, -1, 2 * 16 * 16 * c),
                               atol=1e-4, rtol=1e-4)


def test_flat_patch_gives_zero_target():
    clip = torch.zeros(1, 3, GRID.frames, GRID.height, GRID.width)
    values, _ = PixelTarget(PixelTargetConfig(), GRID, IMAGENET_MEAN, IMAGENET_STD)({"clip": clip})
    assert torch.isfinite(values).all() and values.abs().max() == 0


def test_build_targets_registry():
    targets = build_targets(TargetsConfig(names=["pixel"], pixel=PixelTargetConfig(weight=0.5)),
                            GRID, DataConfig())
    assert list(targets) == ["pixel"]
    pixel = targets["pixel"]
    assert isinstance(pixel, Target)
    assert (pixel.name, pixel.dim, pixel.weight) == ("pixel", GRID.patch_dim, 0.5)
    with pytest.raises(ValueError, match="unknown"):
        build_targets(TargetsConfig(names=["optical_flow"]), GRID, DataConfig())


def test_norm_pix_fast_path_equals_normalising_the_pixels():
    _, clip = _clip(seed=3)
    target = PixelTarget(PixelTargetConfig(norm_pix=True), GRID, IMAGENET_MEAN, IMAGENET_STD)
    values, _ = target({"clip": clip})
    torch.testing.assert_close(values, normalize_patches(target.pixels(clip), 3),
                               atol=1e-4, rtol=1e-4)
