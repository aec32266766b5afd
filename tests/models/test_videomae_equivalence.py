"""Our encoder computes VideoMAE's function: HF ``VideoMAEModel`` weights, mapped by name,
give the same tokens (the layout the later interop/export work relies on)."""

import pytest
import torch

from motionmae.models import create_encoder
from motionmae.tokens import TokenGrid, mask_to_indices

transformers = pytest.importorskip("transformers")

GRID = TokenGrid(frames=4, height=32, width=48)


def _hf_model():
    config = transformers.VideoMAEConfig(
        image_size=(32, 48), patch_size=16, num_frames=4, tubelet_size=2, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        use_mean_pooling=False, layer_norm_eps=1e-6, qkv_bias=True,
    )
    torch.manual_seed(0)
    model = transformers.VideoMAEModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():  # non-trivial biases and norms
            param.add_(torch.randn_like(param) * 0.02)
    return model


def _map_weights(hf_state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    out = {
        "patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf_state["layernorm.weight"],
        "norm.bias": hf_state["layernorm.bias"],
    }
    for i in range(depth):
        hf = f"encoder.layer.{i}."
        att = hf + "attention.attention."
        q_bias = hf_state[att + "query.bias"]
        out |= {
            f"blocks.{i}.norm1.weight": hf_state[hf + "layernorm_before.weight"],
            f"blocks.{i}.norm1.bias": hf_state[hf + "layernorm_before.bias"],
            f"blocks.{i}.attn.qkv.weight": torch.cat([hf_state[att + f"{n}.weight"]
                                                      for n in ("query", "key", "value")]),
            f"blocks.{i}.attn.qkv.bias": torch.cat([q_bias, torch.zeros_like(q_bias),
                                                    hf_state[att + "value.bias"]]),
            f"blocks.{i}.attn.proj.weight": hf_state[hf + "attention.output.dense.weight"],
            f"blocks.{i}.attn.proj.bias": hf_state[hf + "attention.output.dense.bias"],
            f"blocks.{i}.norm2.weight": hf_state[hf + "layernorm_after.weight"],
            f"blocks.{i}.norm2.bias": hf_state[hf + "layernorm_after.bias"],
            f"blocks.{i}.mlp.fc1.weight": hf_state[hf + "intermediate.dense.weight"],
            f"blocks.{i}.mlp.fc1.bias": hf_state[hf + "intermediate.dense.bias"],
            f"blocks.{i}.mlp.fc2.weight": hf_state[hf + "output.dense.weight"],
            f"blocks.{i}.mlp.fc2.bias": hf_state[hf + "output.dense.bias"],
        }
    return out


def test_encoder_matches_hf_videomae():
    hf = _hf_model()
    encoder = create_encoder("tiny", GRID, embed_dim=64, depth=2, num_heads=4,
                             difference_gain=0.0).eval()
    encoder.load_state_dict(_map_weights(hf.state_dict(), 2))
    torch.testing.assert_close(encoder.pos_embed, hf.embeddings.position_embeddings,
                               atol=1e-6, rtol=0)

    clip = torch.randn(2, 3, GRID.frames, GRID.height, GRID.width)
    with torch.no_grad():
        expected = hf(clip.transpose(1, 2)).last_hidden_state
        torch.testing.assert_close(encoder(clip), expected, atol=1e-4, rtol=1e-4)

        mask = torch.zeros(2, GRID.num_tokens, dtype=torch.bool)
        mask[0, [1, 4, 5, 9]] = True
        mask[1, [0, 2, 3, 11]] = True
        visible_idx, _ = mask_to_indices(mask, GRID.num_tokens - 4)
        expected = hf(clip.transpose(1, 2), bool_masked_pos=mask).last_hidden_state
        torch.testing.assert_close(encoder(clip, visible_idx), expected, atol=1e-4, rtol=1e-4)
