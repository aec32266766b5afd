"""transformers VideoMAE folders, both ways: same features to 1e-4 on the same clips."""

import json

import pytest
import torch

import motionmae
from motionmae.interop import (
    InteropError,
    detect_format,
    export_huggingface,
    load_any_encoder,
    load_huggingface,
)
from motionmae.models import create_encoder
from motionmae.tokens import TokenGrid

transformers = pytest.importorskip("transformers")

TOL = {"atol": 1e-4, "rtol": 1e-4}
GRID = TokenGrid(frames=4, height=32, width=32)


def _perturb(module, seed=0, scale=0.05):
    """Non-trivial biases, norms and key biases (init leaves biases at 0, norms at 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=gen))
    return module


def _encoder(grid=GRID, seed=0):
    torch.manual_seed(seed)
    encoder = create_encoder("tiny", grid, embed_dim=64, depth=2, num_heads=2)
    return _perturb(encoder, seed).eval()


def _clip(grid=GRID, batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, grid.frames, grid.height, grid.width, generator=gen)


def _hf_features(model, clip):
    return model(clip.transpose(1, 2)).last_hidden_state  # HF takes [B, T, C, H, W]


@pytest.mark.parametrize("grid", [GRID, TokenGrid(frames=4, height=32, width=48)])
def test_exported_folder_loads_in_transformers_with_same_features(tmp_path, grid):
    encoder = _encoder(grid)
    assert encoder.blocks[0].attn.qkv.bias[64:128].abs().max() > 0  # a key bias to drop
    export_huggingface(encoder, grid, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "videomae"
    assert config["use_mean_pooling"] is False  # so that HF applies the final layernorm
    assert (config["num_frames"], config["tubelet_size"], config["hidden_size"]) == (4, 2, 64)
    model, info = transformers.VideoMAEModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    clip = _clip(grid)
    with torch.no_grad():
        torch.testing.assert_close(_hf_features(model.eval(), clip), encoder(clip), **TOL)


def test_key_bias_is_dropped_without_effect():
    # softmax(q.(k_j + b)) = softmax(q.k_j + q.b): the same shift for every key of a row
    encoder = _encoder()
    clip = _clip()
    with torch.no_grad():
        before = encoder(clip)
        for block in encoder.blocks:
            block.attn.qkv.bias[64:128] = 0
        torch.testing.assert_close(encoder(clip), before, atol=1e-5, rtol=1e-5)


def _hf_model(use_mean_pooling, cls=None, **overrides):
    config = transformers.VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
        use_mean_pooling=use_mean_pooling, decoder_hidden_size=32, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2, decoder_intermediate_size=128, **overrides,
    )
    torch.manual_seed(0)
    return _perturb((cls or transformers.VideoMAEModel)(config)).eval()


@pytest.mark.parametrize("use_mean_pooling", [False, True])
def test_transformers_folder_loads_with_same_features(tmp_path, use_mean_pooling):
    model = _hf_model(use_mean_pooling)
    model.save_pretrained(tmp_path)
    encoder, grid = load_huggingface(tmp_path)
    assert grid == GRID
    assert isinstance(encoder.norm, torch.nn.Identity) == use_mean_pooling
    assert encoder.blocks[0].norm1.eps == model.config.layer_norm_eps  # HF's 1e-12 kept
    clip = _clip()
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), _hf_features(model, clip), **TOL)
    assert detect_format(tmp_path) == "huggingface"
    with torch.no_grad():
        torch.testing.assert_close(motionmae.load_encoder(tmp_path)(clip),
                                   _hf_features(model, clip), **TOL)


@pytest.mark.parametrize("task", ["VideoMAEForPreTraining", "VideoMAEForVideoClassification"])
def test_task_model_folders_load_their_encoder(tmp_path, task):
    model = _hf_model(False, cls=getattr(transformers, task), num_labels=3)
    model.save_pretrained(tmp_path)
    encoder, _ = load_huggingface(tmp_path)
    clip = _clip()
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), _hf_features(model.videomae, clip), **TOL)


def test_round_trip_keeps_every_weight_but_the_key_bias(tmp_path):
    encoder = _encoder()
    assert encoder.patch_embed.difference_gain > 0
    export_huggingface(encoder, None, tmp_path, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    loaded, grid = load_huggingface(tmp_path)
    assert grid == encoder.grid
    # VideoMAE's kernel reads plain frames: the difference basis comes back folded in.
    assert loaded.patch_embed.difference_gain == 0.0
    original, back = encoder.state_dict(), loaded.state_dict()
    original["patch_embed.proj.weight"] = encoder.patch_embed.frame_weight().detach()
    assert original.keys() == back.keys()
    for name, value in original.items():
        if name.endswith("attn.qkv.bias"):
            value = value.clone()
            value[64:128] = 0
        assert torch.equal(back[name], value), name
    _, description = load_any_encoder(tmp_path)
    assert description["data"] == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    assert description["grid"]["frames"] == 4


def test_wrong_folders_are_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(InteropError, match="model_type is 'vit'"):
        load_huggingface(tmp_path)
    with pytest.raises(InteropError, match=r"no config\.json"):
        load_huggingface(tmp_path / "missing")

    folder = tmp_path / "hf"
    _hf_model(False).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3  # weights have 2 layers
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InteropError, match=r"missing keys: \[encoder\.layer\.2\."):
        load_huggingface(folder)
    config["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InteropError, match=r"unexpected keys: \[encoder\.layer\.1\."):
        load_huggingface(folder)


def test_learned_positions_cannot_be_exported(tmp_path):
    encoder = _encoder()
    with torch.no_grad():
        encoder.pos_embed.add_(0.1)
    with pytest.raises(InteropError, match="position table"):
        export_huggingface(encoder, GRID, tmp_path)
