"""Official VideoMAE / TrackMAE checkpoint files (real key layout, saved with torch.save) load
into motionmae models that compute what the official code computes."""

import argparse
import os

import pytest
import torch
from videomae_reference import (
    official_state_dict,
    reference_classifier,
    reference_encoder,
    reference_pretrain,
    sinusoid_table,
)

import motionmae
from motionmae.interop import (
    InteropError,
    convert_official,
    detect_format,
    load_any_encoder,
    load_videomae_classifier,
    load_videomae_encoder,
    load_videomae_pretrain,
    read_state_dict,
)
from motionmae.tokens import TokenGrid, mask_to_indices

TOL = {"atol": 1e-5, "rtol": 1e-5}


def _save(path, state, key="model", **extra):
    torch.save({key: state, **extra}, path)
    return path


def _clip(frames=4, size=32, batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    height, width = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, 3, frames, height, width, generator=gen)


def test_videomae_pretrain_checkpoint_matches_the_official_encoder(tmp_path):
    sd = official_state_dict("pretrain", bias="qv")
    path = _save(tmp_path / "checkpoint.pth", sd, epoch=799)
    encoder, grid = load_videomae_encoder(path, frames=4, size=32, num_heads=2)
    assert grid == TokenGrid(frames=4, height=32, width=32)
    clip = _clip()
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), reference_encoder(sd, clip, heads=2), **TOL)
        mask = torch.zeros(2, grid.num_tokens, dtype=torch.bool)
        mask[0, [1, 2, 5, 6]] = True
        mask[1, [0, 3, 4, 7]] = True
        visible_idx, _ = mask_to_indices(mask, 4)
        torch.testing.assert_close(encoder(clip, visible_idx),
                                   reference_encoder(sd, clip, heads=2, mask=mask), **TOL)
    # q/v biases became a fused bias with a zero key third
    bias = encoder.blocks[0].attn.qkv.bias
    assert torch.equal(bias[64:128], torch.zeros(64))
    assert torch.equal(bias[:64], sd["encoder.blocks.0.attn.q_bias"])


def test_trackmae_checkpoint_under_module_with_fused_bias(tmp_path):
    # TrackMAE: fused qkv bias (non-zero key bias), a saved sin-cos pos_embed buffer, a
    # second decoder; saved under "module"
    sd = official_state_dict("pretrain", bias="fused", pos="buffer", trackmae_extras=True)
    path = _save(tmp_path / "trackmae.pth", sd, key="module")
    # the clip geometry comes from the saved table (8 tokens: 2 x 2 x 2)
    encoder, grid = load_videomae_encoder(path, num_heads=2)
    assert (grid.frames, grid.height, grid.width) == (4, 32, 32)
    clip = _clip()
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), reference_encoder(sd, clip, heads=2), **TOL)


def test_fine_tuned_checkpoint_as_classifier_and_encoder(tmp_path):
    # fine-tuned layout: no encoder prefix, mean pooling (fc_norm, no norm), layer scale,
    # learned position table
    sd = official_state_dict("finetune", layer_scale=True, pos="learned", num_classes=7)
    path = _save(tmp_path / "finetuned.pth", sd)
    model, grid = load_videomae_classifier(path, num_heads=2, source_frames=4, source_size=32)
    assert grid.num_tokens == 8
    clip = _clip()
    pos = sd["pos_embed"][0]
    with torch.no_grad():
        torch.testing.assert_close(model(clip), reference_classifier(sd, clip, 2, pos=pos),
                                   **TOL)
        encoder, _ = load_videomae_encoder(path, num_heads=2, source_frames=4, source_size=32)
        assert isinstance(encoder.norm, torch.nn.Identity)  # VideoMAE has none here
        torch.testing.assert_close(
            encoder(clip), reference_encoder(sd, clip, heads=2, prefix="", pos=pos), **TOL
        )


def test_learned_positions_resampled_trilinearly_for_other_clips(tmp_path):
    sd = official_state_dict("finetune", pos="learned")
    path = _save(tmp_path / "finetuned.pth", sd)
    # without a geometry, the saved table's (2, 2, 2) layout is inferred
    encoder, grid = load_videomae_encoder(path, num_heads=2)
    assert (grid.t, grid.h, grid.w) == (2, 2, 2)
    encoder, grid = load_videomae_encoder(path, frames=8, size=48, num_heads=2)
    assert (grid.t, grid.h, grid.w) == (4, 3, 3)
    source = sd["pos_embed"][0].T.reshape(1, 64, 2, 2, 2)
    expected = torch.nn.functional.interpolate(source, size=(4, 3, 3), mode="trilinear",
                                               align_corners=False).reshape(64, 36).T
    torch.testing.assert_close(encoder.pos_embed[0], expected)
    clip = _clip(frames=8, size=48)
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(clip), reference_encoder(sd, clip, heads=2, prefix="", pos=expected), **TOL
        )


def test_fixed_table_regenerated_for_other_clips(tmp_path):
    sd = official_state_dict("pretrain", pos="buffer")  # saved at 4 frames x 32 px
    path = _save(tmp_path / "checkpoint.pth", sd)
    encoder, grid = load_videomae_encoder(path, frames=8, size=(48, 64), num_heads=2)
    assert (grid.t, grid.h, grid.w) == (4, 3, 4)
    torch.testing.assert_close(encoder.pos_embed[0], sinusoid_table(48, 64), atol=1e-6, rtol=0)
    clip = _clip(frames=8, size=(48, 64))
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), reference_encoder(sd, clip, heads=2), **TOL)


def test_pretrain_decoder_maps_to_the_pixel_decoder(tmp_path):
    sd = official_state_dict("pretrain", layer_scale=True, decoder_dim=32, decoder_depth=2)
    path = _save(tmp_path / "checkpoint.pth", sd)
    model, grid = load_videomae_pretrain(path, frames=4, size=32, num_heads=2, decoder_heads=2)
    assert list(model.decoders) == ["pixel"]
    clip = _clip()
    mask = torch.zeros(2, grid.num_tokens, dtype=torch.bool)
    mask[0, [0, 2, 3, 6, 7]] = True
    mask[1, [1, 2, 4, 5, 6]] = True
    visible_idx, masked_idx = mask_to_indices(mask, 3)
    with torch.no_grad():
        predicted = model(clip, visible_idx, masked_idx)["pixel"]
        torch.testing.assert_close(predicted, reference_pretrain(sd, clip, mask, 2, 2), **TOL)


def test_heads_needed_for_unknown_width_and_inferred_for_published_ones(tmp_path):
    path = _save(tmp_path / "checkpoint.pth", official_state_dict("pretrain"))
    with pytest.raises(InteropError, match="number of encoder attention heads for width 64"):
        load_videomae_encoder(path, frames=4, size=32)
    sd = official_state_dict("pretrain", dim=192, depth=1, pos="buffer")  # ViT-Ti width
    path = _save(tmp_path / "tiny.pth", sd)
    encoder, _ = load_videomae_encoder(path)
    assert encoder.blocks[0].attn.num_heads == 3
    clip = _clip(batch=1)
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), reference_encoder(sd, clip, heads=3), **TOL)


def test_load_encoder_and_load_any_accept_official_files(tmp_path):
    sd = official_state_dict("pretrain", dim=192, depth=1, pos="buffer")
    path = _save(tmp_path / "videomae_vit_tiny.pth", sd)
    assert detect_format(path) == "videomae"
    clip = _clip(batch=1)
    with torch.no_grad():
        expected = reference_encoder(sd, clip, heads=3)
        torch.testing.assert_close(motionmae.load_encoder(path)(clip), expected, **TOL)
        _, description = load_any_encoder(path)
    assert description["kind"] == "videomae"
    assert description["grid"]["frames"] == 4
    assert description["model"]["embed_dim"] == 192


def test_argparse_namespace_in_the_file_is_allowed(tmp_path):
    # the official trainer saves its argparse args next to the weights
    sd = official_state_dict("pretrain")
    path = _save(tmp_path / "checkpoint.pth", sd, args=argparse.Namespace(lr=1e-3, model="x"),
                 epoch=3, optimizer={"state": {}})
    assert read_state_dict(path).keys() == sd.keys()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": official_state_dict("pretrain"), "payload": _Exploit(marker)}, path)
    with pytest.raises(InteropError, match="refused to load"):
        load_videomae_encoder(path, num_heads=2)
    with pytest.raises(InteropError, match="refused"):
        motionmae.load_encoder(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(InteropError, match="not a PyTorch checkpoint"):
        load_videomae_encoder(text)
    empty = _save(tmp_path / "empty.pth", {})
    with pytest.raises(InteropError, match="no state dict"):
        load_videomae_encoder(empty)
    with pytest.raises(InteropError, match="does not exist"):
        load_videomae_encoder(tmp_path / "missing.pth")


def test_other_architectures_name_missing_and_unexpected_keys(tmp_path):
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.zeros(64),
              "fc.weight": torch.zeros(1000, 2048)}
    path = _save(tmp_path / "resnet.pth", resnet, key="state_dict")
    expected = r"missing keys patch_embed\.proj\.weight.*its keys: bn1\.weight, conv1\.weight"
    with pytest.raises(InteropError, match=expected):
        load_videomae_encoder(path)

    image_vit = official_state_dict("finetune")
    image_vit["patch_embed.proj.weight"] = torch.zeros(64, 3, 16, 16)
    with pytest.raises(InteropError, match="image ViT has a 2D kernel"):
        convert_official(image_vit)
    image_vit["cls_token"] = torch.zeros(1, 1, 64)
    with pytest.raises(InteropError, match="class token"):
        convert_official(image_vit)

    broken = official_state_dict("pretrain")
    del broken["encoder.blocks.1.mlp.fc2.weight"]
    broken["encoder.blocks.0.attn.relative_position_bias_table"] = torch.zeros(3)
    broken["encoder.rel_pos"] = torch.zeros(3)
    path = _save(tmp_path / "broken.pth", broken)
    with pytest.raises(InteropError) as info:
        load_videomae_encoder(path, num_heads=2)
    message = str(info.value)
    assert "missing keys: [encoder.blocks.1.mlp.fc2.weight]" in message
    assert "encoder.blocks.0.attn.relative_position_bias_table" in message
    assert "encoder.rel_pos" in message


def test_classifier_needs_a_head(tmp_path):
    path = _save(tmp_path / "pretrain.pth", official_state_dict("pretrain"))
    with pytest.raises(InteropError, match="no classification head"):
        load_videomae_classifier(path, num_heads=2)


def test_safetensors_file_in_the_official_layout(tmp_path):
    from safetensors.torch import save_file

    sd = official_state_dict("pretrain")
    path = tmp_path / "videomae.safetensors"
    save_file(sd, str(path))
    encoder, _ = load_videomae_encoder(path, frames=4, size=32, num_heads=2)
    clip = _clip()
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), reference_encoder(sd, clip, heads=2), **TOL)
