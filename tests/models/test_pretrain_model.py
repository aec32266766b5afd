import pytest
import torch

from motionmae.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ConfigError,
    MaskingConfig,
    ModelConfig,
    PretrainConfig,
    from_dict,
    to_dict,
)
from motionmae.masking import build_mask_generator
from motionmae.models import MaskedVideoModel, create_model
from motionmae.targets import PixelTarget, PixelTargetConfig, masked_mse
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


def test_blocks_per_decoder_follow_the_decoder_count():
    def blocks(model):
        return {name: len(decoder.blocks) for name, decoder in model.decoders.items()}

    one = create_model("tiny", GRID, depth=1)
    assert blocks(one) == {"pixel": 4} and one.cfg.decoder_depth == 4  # VideoMAE's
    two = create_model("tiny", GRID, {"pixel": GRID.patch_dim, "tracks": 6}, depth=1)
    assert blocks(two) == {"pixel": 2, "tracks": 2} and two.cfg.decoder_depth == 2
    joint = create_model("tiny", GRID, {"pixel": GRID.patch_dim, "tracks": 6}, depth=1,
                         joint_targets=["pixel", "tracks"])
    assert blocks(joint) == {"joint": 4}
    assert blocks(create_model("tiny", GRID, {"pixel": GRID.patch_dim, "tracks": 6}, depth=1,
                               decoder_depth=3)) == {"pixel": 3, "tracks": 3}


def _indices(model_grid=GRID, seed=0):
    generate = build_mask_generator(MaskingConfig(kind="tube", ratio=0.5), model_grid)
    return mask_to_indices(generate(_batch(seed)), generate.num_visible)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_joint_decoder_predicts_several_targets_with_one_decoder():
    dims = {"pixel": GRID.patch_dim, "hog": 108, "m3traj": 696}
    torch.manual_seed(0)
    joint = create_model("tiny", GRID, dims, depth=1, decoder_depth=1,
                         joint_targets=["m3traj", "hog"])
    separate = create_model("tiny", GRID, dims, depth=1, decoder_depth=1)
    assert set(joint.decoders) == {"pixel", "joint"}
    assert set(separate.decoders) == {"pixel", "hog", "m3traj"}
    visible_idx, masked_idx = _indices()
    batch = _batch()
    out = joint(batch["clip"], visible_idx, masked_idx)
    assert list(out) == ["pixel", "hog", "m3traj"]  # the targets, as MaskedVideoModel promises
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "pixel": (2, 4, 1536), "hog": (2, 4, 108), "m3traj": (2, 4, 696)}
    # the joint head's output, split in joint_targets order
    whole = joint.decoders["joint"](joint.encoder(batch["clip"], visible_idx), visible_idx,
                                    masked_idx)
    assert whole.shape == (2, 4, 696 + 108)
    torch.testing.assert_close(out["m3traj"], whole[..., :696])
    torch.testing.assert_close(out["hog"], whole[..., 696:])
    # one decoder (projection, mask token, blocks, norm) + one head of the summed width
    body = _count(separate.decoders["hog"]) - _count(separate.decoders["hog"].head)
    decoder_dim = 128  # the tiny size's decoder width
    assert _count(joint.decoders["joint"]) == body + decoder_dim * (108 + 696) + (108 + 696)
    assert _count(separate) - _count(joint) == body  # exactly one decoder body saved


def test_joint_decoder_keeps_per_target_losses_and_gradients():
    torch.manual_seed(0)
    model = create_model("tiny", GRID, {"hog": 6, "m3traj": 4}, depth=1, decoder_depth=1,
                         joint_targets=["hog", "m3traj"])
    visible_idx, masked_idx = _indices()
    out = model(_batch()["clip"], visible_idx, masked_idx)
    out["m3traj"].pow(2).sum().backward()  # a loss on one part only
    head = model.decoders["joint"].head
    assert torch.all(head.weight.grad[:6] == 0) and torch.all(head.bias.grad[:6] == 0)
    assert head.weight.grad[6:].abs().sum() > 0


def test_a_checkpoint_with_separate_decoders_still_loads():
    """A config written before ``model.joint_targets`` existed rebuilds the separate decoders,
    and their state dict loads strictly with the same predictions."""
    dims = {"hog": 108, "m3traj": 220}
    torch.manual_seed(0)
    old = create_model("tiny", GRID, dims, depth=1, decoder_depth=1)
    state = old.state_dict()
    assert {"decoders.hog.head.weight", "decoders.m3traj.head.weight"} <= set(state)
    written = to_dict(old.cfg)
    written.pop("joint_targets")  # what an older motionmae wrote in config.json
    rebuilt = MaskedVideoModel(from_dict(ModelConfig, written, "model"), GRID, dims)
    rebuilt.load_state_dict(state, strict=True)
    visible_idx, masked_idx = _indices()
    clip = _batch()["clip"]
    with torch.no_grad():
        expected, got = old(clip, visible_idx, masked_idx), rebuilt(clip, visible_idx, masked_idx)
    for name in dims:
        torch.testing.assert_close(got[name], expected[name])
    joint = create_model("tiny", GRID, dims, depth=1, decoder_depth=1,
                         joint_targets=["hog", "m3traj"])
    with pytest.raises(RuntimeError, match=r"decoders\.joint"):
        joint.load_state_dict(state)


def test_joint_targets_are_validated_by_name():
    with pytest.raises(ConfigError, match=r"model\.joint_targets"):
        ModelConfig(joint_targets=["hog"]).validate()
    with pytest.raises(ConfigError, match=r"model\.joint_targets"):
        ModelConfig(joint_targets=["hog", "hog"]).validate()
    cfg = PretrainConfig()
    cfg.targets.names = ["pixel", "hog"]
    cfg.model.joint_targets = ["hog", "m3traj"]
    with pytest.raises(ConfigError, match=r"model\.joint_targets.*'m3traj'"):
        cfg.validate()
    with pytest.raises(ValueError, match=r"model\.joint_targets"):
        create_model("tiny", GRID, {"hog": 3, "pixel": 5}, joint_targets=["hog", "m3traj"])


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


def test_targets_predicted_on_visible_tokens_too():
    """``with_visible`` names the targets whose output covers ``[visible, hidden]``; the
    hidden part and every other target are as without it, with separate decoders and with a
    joint one."""
    dims = {"pixel": GRID.patch_dim, "hog": 108, "m3traj": 696}
    torch.manual_seed(0)
    joint = create_model("tiny", GRID, dims, depth=1, decoder_depth=1,
                         joint_targets=["m3traj", "hog"]).eval()
    visible_idx, masked_idx = _indices()
    clip = _batch()["clip"]
    hidden = joint(clip, visible_idx, masked_idx)
    both = joint(clip, visible_idx, masked_idx, with_visible=["pixel", "hog"])
    assert {k: tuple(v.shape) for k, v in both.items()} == {
        "pixel": (2, 8, 1536), "hog": (2, 8, 108), "m3traj": (2, 4, 696)}
    for name in dims:
        torch.testing.assert_close(both[name][:, -4:], hidden[name])


def test_visible_targets_must_be_selected():
    cfg = PretrainConfig()
    cfg.targets.names = ["pixel", "tracks"]
    cfg.targets.visible = ["hog"]
    with pytest.raises(ConfigError, match=r"targets\.visible: 'hog' is not among"):
        cfg.targets.validate()
    cfg.targets.visible, cfg.targets.visible_weight = ["tracks"], -1.0
    with pytest.raises(ConfigError, match=r"targets\.visible_weight: must be >= 0"):
        cfg.targets.validate()
