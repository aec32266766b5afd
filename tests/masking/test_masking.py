import pytest
import torch

from motionmae.config import MaskingConfig
from motionmae.masking import build_mask_generator, random_mask, tube_mask
from motionmae.tokens import TokenGrid, gather_tokens, mask_to_indices

GRID = TokenGrid(frames=8, height=64, width=48)  # t=4, h=4, w=3: L=48, 12 per slice


@pytest.mark.parametrize("fn", [random_mask, tube_mask])
@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_every_row_keeps_num_visible(fn, ratio):
    mask = fn(6, GRID, ratio, torch.Generator().manual_seed(0))
    assert mask.shape == (6, GRID.num_tokens) and mask.dtype == torch.bool
    assert ((~mask).sum(dim=1) == GRID.num_visible(ratio)).all()


def test_random_and_tube_keep_the_same_count():
    for ratio in (0.3, 0.75, 0.9, 0.95):
        counts = {int((~fn(1, GRID, ratio)).sum()) for fn in (random_mask, tube_mask)}
        assert counts == {GRID.num_visible(ratio)}


def test_tube_mask_is_the_same_in_every_slice():
    mask = tube_mask(5, GRID, 0.75, torch.Generator().manual_seed(1))
    slices = mask.view(5, GRID.t, GRID.spatial)
    assert (slices == slices[:, :1]).all()


def test_random_mask_differs_between_slices():
    mask = random_mask(4, GRID, 0.5, torch.Generator().manual_seed(1))
    slices = mask.view(4, GRID.t, GRID.spatial)
    assert not (slices == slices[:, :1]).all()


@pytest.mark.parametrize("fn", [random_mask, tube_mask])
def test_seeded_generator_is_deterministic_and_rows_differ(fn):
    a = fn(8, GRID, 0.75, torch.Generator().manual_seed(7))
    b = fn(8, GRID, 0.75, torch.Generator().manual_seed(7))
    c = fn(8, GRID, 0.75, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a}) > 1


@pytest.mark.parametrize("kind", ["random", "tube"])
def test_generator_from_config(kind):
    generate = build_mask_generator(MaskingConfig(kind=kind, ratio=0.75), GRID)
    assert generate.num_visible == GRID.num_visible(0.75)
    clip = torch.zeros(3, 3, GRID.frames, GRID.height, GRID.width)
    mask = generate({"clip": clip}, torch.Generator().manual_seed(0))
    assert mask.shape == (3, GRID.num_tokens) and mask.device == clip.device
    assert ((~mask).sum(dim=1) == generate.num_visible).all()
    assert generate({"clip": clip}).shape == mask.shape  # no generator: the global one


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match=r"masking\.kind: unknown masking kind 'spiral'"):
        build_mask_generator(MaskingConfig(kind="spiral"), GRID)


def test_mask_to_indices_round_trip():
    mask = tube_mask(4, GRID, 0.75, torch.Generator().manual_seed(3))
    num_visible = GRID.num_visible(0.75)
    visible_idx, masked_idx = mask_to_indices(mask, num_visible)
    assert visible_idx.shape == (4, num_visible)
    assert masked_idx.shape == (4, GRID.num_tokens - num_visible)
    assert not torch.gather(mask, 1, visible_idx).any()
    assert torch.gather(mask, 1, masked_idx).all()
    assert (visible_idx.diff(dim=1) > 0).all() and (masked_idx.diff(dim=1) > 0).all()

    tokens = torch.randn(4, GRID.num_tokens, 5)
    rebuilt = torch.zeros_like(tokens)
    for index in (visible_idx, masked_idx):
        rebuilt.scatter_(1, index.unsqueeze(-1).expand(-1, -1, 5), gather_tokens(tokens, index))
    assert torch.equal(rebuilt, tokens)


def test_the_default_ratio_is_resolved_from_the_token_count_and_saved():
    from motionmae.config import PretrainConfig, load_config, to_dict
    from motionmae.masking import default_mask_ratio

    assert default_mask_ratio(1568) == 0.9 and default_mask_ratio(392) == 0.75
    paper = load_config(PretrainConfig)  # 16 x 224 x 224: VideoMAE's geometry and ratio
    small = load_config(PretrainConfig, overrides=["data.size=112"])
    chosen = load_config(PretrainConfig, overrides=["data.size=112", "masking.ratio=0.9"])
    assert small.masking.ratio is None  # checking a config does not change it
    resolved = [cfg.resolve(num_videos=8) for cfg in (paper, small, chosen)]
    assert [cfg.masking.ratio for cfg in resolved] == [0.9, 0.75, 0.9]
    assert to_dict(resolved[1])["masking"]["ratio"] == 0.75  # a resumed run reads the number
    assert small.masking.ratio is None  # resolve() returns a copy
    with pytest.raises(ValueError, match=r"masking\.ratio is null: build from a resolved"):
        build_mask_generator(MaskingConfig(kind="tube"), GRID)
