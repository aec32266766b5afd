"""Official VideoMAE/TrackMAE checkpoints in miniature, and the official forward pass written
out independently of motionmae (plain tensor ops following ``modeling_finetune.py`` /
``modeling_pretrain.py`` of MCG-NJU/VideoMAE and rvandeghen/TrackMAE), to check the loaders
against."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6


def sinusoid_table(n_position: int, d_hid: int) -> torch.Tensor:
    """``get_sinusoid_encoding_table`` of the official code, ``[N, D]``."""

    def angles(position):
        return [position / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)]

    table = np.array([angles(p) for p in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float)


def _block(gen, prefix, dim, hidden, bias, layer_scale):
    def rnd(*shape, scale=0.05, base=0.0):
        return base + scale * torch.randn(*shape, generator=gen)

    sd = {
        f"{prefix}norm1.weight": rnd(dim, scale=0.1, base=1.0),
        f"{prefix}norm1.bias": rnd(dim, scale=0.1),
        f"{prefix}attn.qkv.weight": rnd(3 * dim, dim, scale=0.15),
        f"{prefix}attn.proj.weight": rnd(dim, dim, scale=0.1),
        f"{prefix}attn.proj.bias": rnd(dim),
        f"{prefix}norm2.weight": rnd(dim, scale=0.1, base=1.0),
        f"{prefix}norm2.bias": rnd(dim, scale=0.1),
        f"{prefix}mlp.fc1.weight": rnd(hidden, dim, scale=0.1),
        f"{prefix}mlp.fc1.bias": rnd(hidden),
        f"{prefix}mlp.fc2.weight": rnd(dim, hidden, scale=0.05),
        f"{prefix}mlp.fc2.bias": rnd(dim),
    }
    if bias == "qv":  # VideoMAE
        sd[f"{prefix}attn.q_bias"] = rnd(dim, scale=0.2)
        sd[f"{prefix}attn.v_bias"] = rnd(dim, scale=0.2)
    elif bias == "fused":  # TrackMAE: nn.Linear(bias=True), key bias included
        sd[f"{prefix}attn.qkv.bias"] = rnd(3 * dim, scale=0.2)
    if layer_scale:
        sd[f"{prefix}gamma_1"] = rnd(dim, scale=0.3, base=0.5)
        sd[f"{prefix}gamma_2"] = rnd(dim, scale=0.3, base=0.5)
    return sd


def official_state_dict(
    layout: str = "pretrain",
    *,
    dim: int = 64,
    depth: int = 2,
    tubelet: int = 2,
    patch: int = 16,
    frames: int = 4,
    size: int = 32,
    bias: str = "qv",
    layer_scale: bool = False,
    pos: str | None = None,
    num_classes: int = 5,
    decoder_dim: int = 32,
    decoder_depth: int = 1,
    trackmae_extras: bool = False,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random weights under the official key names.

    ``layout``: ``pretrain`` (``encoder.*`` + decoder) or ``finetune`` (top-level encoder,
    ``fc_norm`` + ``head``, no ``norm``: mean pooling). ``pos``: None (fixed table, not saved),
    ``"buffer"`` (TrackMAE's saved sin-cos table) or ``"learned"``.
    """
    gen = torch.Generator().manual_seed(seed)
    num_patches = (frames // tubelet) * (size // patch) ** 2
    prefix = "encoder." if layout == "pretrain" else ""
    sd = {
        f"{prefix}patch_embed.proj.weight":
            0.05 * torch.randn(dim, 3, tubelet, patch, patch, generator=gen),
        f"{prefix}patch_embed.proj.bias": 0.1 * torch.randn(dim, generator=gen),
    }
    if pos == "buffer":
        sd[f"{prefix}pos_embed"] = sinusoid_table(num_patches, dim).unsqueeze(0)
    elif pos == "learned":
        sd[f"{prefix}pos_embed"] = 0.5 * torch.randn(1, num_patches, dim, generator=gen)
    for i in range(depth):
        sd |= _block(gen, f"{prefix}blocks.{i}.", dim, 4 * dim, bias, layer_scale)
    if layout == "pretrain":
        sd[f"{prefix}norm.weight"] = 1.0 + 0.1 * torch.randn(dim, generator=gen)
        sd[f"{prefix}norm.bias"] = 0.1 * torch.randn(dim, generator=gen)
        for i in range(decoder_depth):
            sd |= _block(gen, f"decoder.blocks.{i}.", decoder_dim, 4 * decoder_dim, bias,
                         layer_scale)
        out_dim = 3 * tubelet * patch * patch
        sd |= {
            "decoder.norm.weight": 1.0 + 0.1 * torch.randn(decoder_dim, generator=gen),
            "decoder.norm.bias": 0.1 * torch.randn(decoder_dim, generator=gen),
            "decoder.head.weight": 0.05 * torch.randn(out_dim, decoder_dim, generator=gen),
            "decoder.head.bias": 0.1 * torch.randn(out_dim, generator=gen),
            "encoder_to_decoder.weight": 0.1 * torch.randn(decoder_dim, dim, generator=gen),
            "mask_token": 0.02 * torch.randn(1, 1, decoder_dim, generator=gen),
        }
        if trackmae_extras:
            sd["decoder_pos_embed"] = sinusoid_table(num_patches, decoder_dim).unsqueeze(0)
            sd["encoder_to_tracker.weight"] = torch.randn(decoder_dim, dim, generator=gen)
            sd |= {k.replace("decoder.", "tracker_decoder."): v.clone()
                   for k, v in sd.items() if k.startswith("decoder.blocks.")}
            sd["tracker_decoder.norm.weight"] = torch.ones(decoder_dim)
            sd["tracker_decoder.norm.bias"] = torch.zeros(decoder_dim)
            sd["tracker_decoder.head.weight"] = torch.randn(8, decoder_dim, generator=gen)
            sd["tracker_decoder.head.bias"] = torch.zeros(8)
    else:
        sd |= {
            "fc_norm.weight": 1.0 + 0.1 * torch.randn(dim, generator=gen),
            "fc_norm.bias": 0.1 * torch.randn(dim, generator=gen),
            "head.weight": 0.1 * torch.randn(num_classes, dim, generator=gen),
            "head.bias": 0.1 * torch.randn(num_classes, generator=gen),
        }
    return sd


def _layer_norm(sd, prefix, x):
    dim = x.shape[-1]
    return F.layer_norm(x, (dim,), sd[prefix + "weight"], sd[prefix + "bias"], EPS)


def reference_block(sd: dict, prefix: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    """One official ``Block`` (``Attention`` with explicit softmax, ``Mlp``, layer scale)."""
    batch, tokens, dim = x.shape
    h = _layer_norm(sd, prefix + "norm1.", x)
    if prefix + "attn.q_bias" in sd:
        q_bias = sd[prefix + "attn.q_bias"]
        qkv_bias = torch.cat((q_bias, torch.zeros_like(sd[prefix + "attn.v_bias"]),
                              sd[prefix + "attn.v_bias"]))
    else:
        qkv_bias = sd.get(prefix + "attn.qkv.bias")
    qkv = F.linear(h, sd[prefix + "attn.qkv.weight"], qkv_bias)
    qkv = qkv.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (dim // heads) ** -0.5
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    h = (attn @ v).transpose(1, 2).reshape(batch, tokens, -1)
    h = F.linear(h, sd[prefix + "attn.proj.weight"], sd[prefix + "attn.proj.bias"])
    if prefix + "gamma_1" in sd:
        h = sd[prefix + "gamma_1"] * h
    x = x + h
    h = _layer_norm(sd, prefix + "norm2.", x)
    h = F.linear(F.gelu(F.linear(h, sd[prefix + "mlp.fc1.weight"], sd[prefix + "mlp.fc1.bias"])),
                 sd[prefix + "mlp.fc2.weight"], sd[prefix + "mlp.fc2.bias"])
    if prefix + "gamma_2" in sd:
        h = sd[prefix + "gamma_2"] * h
    return x + h


def reference_encoder(sd: dict, clip: torch.Tensor, heads: int, prefix: str = "encoder.",
                      pos: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """The official encoder: conv3d tubelets + position table -> blocks -> ``norm`` (if the
    checkpoint has one). ``pos [N, D]`` defaults to the fixed table; ``mask [B, N]`` bool
    (True = hidden) keeps the visible tokens as ``x[~mask]``."""
    w = sd[prefix + "patch_embed.proj.weight"]
    x = F.conv3d(clip, w, sd[prefix + "patch_embed.proj.bias"], stride=w.shape[2:])
    x = x.flatten(2).transpose(1, 2)
    if pos is None:
        pos = sinusoid_table(x.shape[1], x.shape[2])
    x = x + pos.unsqueeze(0)
    if mask is not None:
        x = x[~mask].reshape(x.shape[0], -1, x.shape[2])
    depth = 1 + max(int(k[len(prefix):].split(".")[1]) for k in sd
                    if k.startswith(prefix + "blocks."))
    for i in range(depth):
        x = reference_block(sd, f"{prefix}blocks.{i}.", x, heads)
    if prefix + "norm.weight" in sd:
        x = _layer_norm(sd, prefix + "norm.", x)
    return x


def reference_classifier(sd: dict, clip: torch.Tensor, heads: int,
                         pos: torch.Tensor | None = None) -> torch.Tensor:
    """The official fine-tuned ``VisionTransformer`` with mean pooling: logits ``[B, K]``."""
    x = reference_encoder(sd, clip, heads, prefix="", pos=pos)
    x = _layer_norm(sd, "fc_norm.", x.mean(1))
    return F.linear(x, sd["head.weight"], sd["head.bias"])


def reference_pretrain(sd: dict, clip: torch.Tensor, mask: torch.Tensor, heads: int,
                       decoder_heads: int) -> torch.Tensor:
    """The official ``PretrainVisionTransformer``: pixel predictions for the hidden tokens
    ``[B, M, 3 * tubelet * patch**2]`` in token order."""
    x_vis = reference_encoder(sd, clip, heads, mask=mask)
    x_vis = F.linear(x_vis, sd["encoder_to_decoder.weight"])
    batch, _, dim = x_vis.shape
    pos = sinusoid_table(mask.shape[1], dim).unsqueeze(0).expand(batch, -1, -1)
    pos_vis = pos[~mask].reshape(batch, -1, dim)
    pos_mask = pos[mask].reshape(batch, -1, dim)
    x = torch.cat([x_vis + pos_vis, sd["mask_token"] + pos_mask], dim=1)
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.blocks."))
    for i in range(depth):
        x = reference_block(sd, f"decoder.blocks.{i}.", x, decoder_heads)
    x = _layer_norm(sd, "decoder.norm.", x[:, -pos_mask.shape[1]:])
    return F.linear(x, sd["decoder.head.weight"], sd["decoder.head.bias"])
