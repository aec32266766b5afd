import pytest
import torch

from motionmae.config import MODEL_SIZES
from motionmae.models import create_encoder, create_model
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=16, height=224, width=224)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def _vit_params(dim, depth, mlp_ratio=4, patch_dim=1536):
    """ViT encoder with a fused qkv bias (VideoMAE has no key bias: ``depth * dim`` fewer)."""
    block = 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim)
    block += 2 * mlp_ratio * dim * dim + mlp_ratio * dim + dim
    return patch_dim * dim + dim + depth * block + 2 * dim


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_encoder_parameter_count(size):
    dim, depth, *_ = MODEL_SIZES[size]
    with torch.device("meta"):
        encoder = create_encoder(size, GRID)
    assert _count(encoder) == _vit_params(dim, depth)


def test_vit_base_matches_videomae():
    with torch.device("meta"):
        encoder = create_encoder("base", GRID)
    # VideoMAE ViT-B/16, tubelet 2: 86.23M without classifier head (86,227,200 + 12 key biases)
    assert _count(encoder) - 12 * 768 == 86_227_200


def test_pretraining_model_sizes():
    with torch.device("meta"):
        model = create_model("small", GRID)
    decoder = model.decoders["pixel"]
    dim = 192  # small: decoder 192 wide, 4 blocks, pixel head 1536
    expected = 384 * dim + dim + 4 * (_vit_params(dim, 1, patch_dim=0) - 3 * dim) + 2 * dim
    expected += dim * 1536 + 1536
    assert _count(decoder) == expected
    assert _count(model.encoder) == _vit_params(384, 12)
