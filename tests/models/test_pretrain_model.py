import torch

from motionmae.config import IMAGENET_MEAN, IMAGENET_STD, MaskingConfig, PixelTargetConfig
from motionmae.masking import build_mask_generator
from motionmae.models import MaskedVideoModel, create_model
from motionmae.targets import PixelTarget, masked_mse
from motionmae.tokens import TokenGrid, mask_to_indices

GRID = TokenGrid(frames=4, height=32, width=32)  # L = 2 * 2 * 2 = 8


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"clip": torch.randn(2, 3, GRID.frames, GRID.height, GRID.width, generator=g)}


def test_one_decoder_per_target_and_init():
    torch.manual_seed(0)
    model = create_model("tiny", GRID, {"pixel": GRID.patch_dim, "other": 7}, depth=1)
    assert isinstance(model, MaskedVideoModel)
    assert set(model.decoders) == {"pixel", "other"}
    generate = build_mask_generator(MaskingConfig(kind="tube", ratio=0.5), GRID)
    batch = _batch()
    visible_idx, masked_idx = mask_to_indices(generate(batch), generate.num_visible)
    out = model(batch["clip"], visible_idx, masked_idx)
    assert out["pixel"].shape == (2, masked_idx.shape[1], GRID.patch_dim)
    assert out["other"].shape == (2, masked_idx.shape[1], 7)

    decoder = model.decoders["pixel"]
    assert decoder.encoder_to_decoder.bias is None
    assert 0.005 < decoder.mask_token.std() < 0.05
    assert torch.all(model.encoder.blocks[0].attn.qkv.bias == 0)
    assert torch.all(model.encoder.norm.weight == 1)
    names = {name for name, _ in model.named_parameters()}
    assert {"encoder.patch_embed.proj.weight", "encoder.blocks.0.attn.qkv.weight",
            "encoder.blocks.0.mlp.fc1.weight", "decoders.pixel.mask_token",
            "decoders.pixel.head.weight"} <= names
    assert not any("pos_embed" in key for key in model.state_dict())  # fixed, not saved


def _loss(model, target, batch, mask_gen, generator):
    visible_idx, masked_idx = mask_to_indices(mask_gen(batch, generator), mask_gen.num_visible)
    pred = model(batch["clip"], visible_idx, masked_idx)["pixel"]
    values, weight = target(batch)
    return masked_mse(pred.float(), values, masked_idx, weight)


def test_overfits_one_clip():
    """One clip, one mask, 100 AdamW steps: the pixel loss falls by more than 50x."""
    torch.manual_seed(0)
    model = create_model("tiny", GRID, {"pixel": GRID.patch_dim}, depth=2, decoder_depth=1)
    target = PixelTarget(PixelTargetConfig(norm_pix=True), GRID, IMAGENET_MEAN, IMAGENET_STD)
    mask_gen = build_mask_generator(MaskingConfig(kind="tube", ratio=0.5), GRID)
    batch = {"clip": _batch()["clip"][:1]}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    with torch.no_grad():
        first = _loss(model, target, batch, mask_gen, torch.Generator().manual_seed(0))
    for _ in range(100):
        loss = _loss(model, target, batch, mask_gen, torch.Generator().manual_seed(0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = _loss(model, target, batch, mask_gen, torch.Generator().manual_seed(0))
    assert last < first / 50, (first, last)


def test_bf16_autocast_training_step():
    torch.manual_seed(0)
    model = create_model("tiny", GRID, depth=2, decoder_depth=1)
    target = PixelTarget(PixelTargetConfig(), GRID, IMAGENET_MEAN, IMAGENET_STD)
    mask_gen = build_mask_generator(MaskingConfig(kind="tube", ratio=0.5), GRID)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(model, target, _batch(), mask_gen, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for name, p in model.named_parameters() if not name.endswith("attn.qkv.bias"))
