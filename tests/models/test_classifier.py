import pytest
import torch

from motionmae.models import VideoClassifier, create_encoder
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=4, height=32, width=32)


def _classifier(**kwargs):
    torch.manual_seed(0)
    return VideoClassifier(create_encoder("tiny", GRID, depth=2), num_classes=5, **kwargs)


def test_logits_shape_and_small_initial_head():
    model = _classifier(dropout=0.1).eval()
    logits = model(torch.randn(3, 3, GRID.frames, GRID.height, GRID.width))
    assert logits.shape == (3, 5)
    assert logits.abs().max() < 0.05  # head scaled by 1e-3 at init
    assert model.head.weight.std() < 1e-4


def test_gradients_reach_the_encoder():
    model = _classifier()
    model(torch.randn(2, 3, GRID.frames, GRID.height, GRID.width)).sum().backward()
    assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0


def test_layer_of_for_layer_decay():
    model = _classifier()
    depths = {name: model.layer_of(name) for name, _ in model.named_parameters()}
    assert depths["encoder.patch_embed.proj.weight"] == 0
    assert depths["encoder.blocks.1.mlp.fc2.bias"] == 2
    assert depths["head.weight"] == depths["encoder.norm.weight"] == model.num_layers + 1


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="pool"):
        _classifier(pool="cls")
