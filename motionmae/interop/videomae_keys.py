"""Official VideoMAE / TrackMAE state dicts renamed to motionmae's layout (no model built).

The official code (``MCG-NJU/VideoMAE``, ``rvandeghen/TrackMAE``: ``modeling_pretrain.py``,
``modeling_finetune.py``) saves ``{"model": state_dict, ...}`` (``"module"`` in some releases)
in one of two layouts:

- pretraining: ``encoder.patch_embed.proj.*``, ``encoder.blocks.N.*``, ``encoder.norm.*``
  (TrackMAE also ``encoder.pos_embed``, a saved sin-cos buffer), and the decoder:
  ``decoder.blocks.N.*``, ``decoder.norm.*``, ``decoder.head.*``, ``encoder_to_decoder.weight``,
  ``mask_token`` (TrackMAE: ``decoder_pos_embed``, ``tracker_decoder.*``,
  ``encoder_to_tracker.weight``);
- fine-tuning: ``patch_embed.proj.*``, ``blocks.N.*``, optional ``pos_embed`` (learned),
  ``fc_norm.*`` + ``head.*`` with mean pooling (then no ``norm``), or ``norm.*`` without.

A block is ``norm1``, ``attn.qkv.weight`` with ``attn.q_bias``/``attn.v_bias`` (VideoMAE: no key
bias) or ``attn.qkv.bias`` (TrackMAE), ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2`` and,
with layer scale, ``gamma_1``/``gamma_2``, which are folded into ``attn.proj`` and ``mlp.fc2``
(``gamma * (W x + b) = (gamma W) x + gamma b``, exact).

:func:`convert_official` checks every key, names the missing and unexpected ones, and reads
the architecture (width, depth, MLP ratio, tubelet, patch, channels) off the shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from motionmae.interop.common import InteropError, check_mlp_ratio, list_keys

__all__ = ["OfficialWeights", "convert_official"]

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_REQUIRED = (
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
    "mlp.fc2.bias",
)
_BLOCK_OPTIONAL = ("attn.qkv.bias", "attn.q_bias", "attn.v_bias", "gamma_1", "gamma_2")
_ENCODER_TOP = ("patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed", "norm.weight",
                "norm.bias")
_HEAD_KEYS = ("fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias")
# pretraining keys outside the encoder that are not mapped (TrackMAE's extra decoder/buffer)
_IGNORED_PREFIXES = ("tracker_decoder.", "encoder_to_tracker.", "decoder_pos_embed")


@dataclass
class OfficialWeights:
    """An official checkpoint's tensors renamed to motionmae's layout, split by part, with the
    architecture read off the shapes."""

    layout: str  # "pretrain" or "finetune"
    encoder: dict[str, torch.Tensor]  # VideoEncoder names, position table excluded
    pos_embed: torch.Tensor | None  # [N, D] as saved; None = fixed sin-cos, not saved
    embed_dim: int
    depth: int
    mlp_ratio: float
    tubelet: int
    patch: int
    channels: int
    head: dict[str, torch.Tensor] = field(default_factory=dict)  # fc_norm.*, head.*
    decoder: dict[str, torch.Tensor] = field(default_factory=dict)  # TokenDecoder names
    ignored: list[str] = field(default_factory=list)

    @property
    def has_norm(self) -> bool:
        """Whether the encoder ends in a LayerNorm (fine-tuned mean-pooling models do not)."""
        return "norm.weight" in self.encoder


def _convert_blocks(
    tree: dict[str, torch.Tensor], prefix: str, missing: list[str], unexpected: list[str]
) -> tuple[dict[str, torch.Tensor], int]:
    """Map ``blocks.N.*`` of one module (keys relative to it) to motionmae's ``Block``.

    Returns the converted tensors and the depth; names of absent or unknown tensors are
    appended to ``missing``/``unexpected`` (with ``prefix``).
    """
    per_block: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tree.items():
        match = _BLOCK.match(key)
        if match is None:
            continue
        index, part = int(match.group(1)), match.group(2)
        if part not in _BLOCK_REQUIRED + _BLOCK_OPTIONAL:
            unexpected.append(prefix + key)
            continue
        per_block.setdefault(index, {})[part] = value
    depth = max(per_block) + 1 if per_block else 0
    out: dict[str, torch.Tensor] = {}
    for i in range(depth):
        parts = per_block.get(i, {})
        absent = [f"{prefix}blocks.{i}.{p}" for p in _BLOCK_REQUIRED if p not in parts]
        if absent:
            missing.extend(absent)
            continue
        qkv = parts["attn.qkv.weight"]
        dim = qkv.shape[1]
        if qkv.shape[0] != 3 * dim:
            raise InteropError(
                f"{prefix}blocks.{i}.attn.qkv.weight has shape {tuple(qkv.shape)}: an attention "
                f"width other than the embedding width ({dim}, attn_head_dim) is not supported"
            )
        if "attn.qkv.bias" in parts:
            bias = parts["attn.qkv.bias"]
        elif "attn.q_bias" in parts and "attn.v_bias" in parts:
            q_bias = parts["attn.q_bias"]
            bias = torch.cat([q_bias, torch.zeros_like(q_bias), parts["attn.v_bias"]])
        else:  # qkv_bias=False
            bias = qkv.new_zeros(3 * dim)
        proj_w, proj_b = parts["attn.proj.weight"], parts["attn.proj.bias"]
        fc2_w, fc2_b = parts["mlp.fc2.weight"], parts["mlp.fc2.bias"]
        if "gamma_1" in parts:  # layer scale, folded into the branch's last linear map
            proj_w, proj_b = parts["gamma_1"][:, None] * proj_w, parts["gamma_1"] * proj_b
        if "gamma_2" in parts:
            fc2_w, fc2_b = parts["gamma_2"][:, None] * fc2_w, parts["gamma_2"] * fc2_b
        block = f"blocks.{i}."
        out |= {
            block + "norm1.weight": parts["norm1.weight"],
            block + "norm1.bias": parts["norm1.bias"],
            block + "attn.qkv.weight": qkv,
            block + "attn.qkv.bias": bias,
            block + "attn.proj.weight": proj_w,
            block + "attn.proj.bias": proj_b,
            block + "norm2.weight": parts["norm2.weight"],
            block + "norm2.bias": parts["norm2.bias"],
            block + "mlp.fc1.weight": parts["mlp.fc1.weight"],
            block + "mlp.fc1.bias": parts["mlp.fc1.bias"],
            block + "mlp.fc2.weight": fc2_w,
            block + "mlp.fc2.bias": fc2_b,
        }
    return out, depth


def _convert_decoder(rest: dict[str, torch.Tensor], missing: list[str],
                     unexpected: list[str]) -> dict[str, torch.Tensor]:
    """The VideoMAE pixel decoder as :class:`TokenDecoder` tensors ({} if there is none)."""
    tree = {k[len("decoder."):]: v for k, v in rest.items() if k.startswith("decoder.")}
    if not tree:
        return {}
    out, _ = _convert_blocks(tree, "decoder.", missing, unexpected)
    for name in ("norm.weight", "norm.bias", "head.weight", "head.bias"):
        if name in tree:
            out[name] = tree[name]
        else:
            missing.append("decoder." + name)
    unexpected.extend("decoder." + k for k in tree
                      if not _BLOCK.match(k) and k not in ("norm.weight", "norm.bias",
                                                           "head.weight", "head.bias"))
    for name in ("encoder_to_decoder.weight", "mask_token"):
        if name in rest:
            out[name] = rest[name]
        else:
            missing.append(name)
    return out


def convert_official(state: dict[str, torch.Tensor], source: str = "checkpoint"
                     ) -> OfficialWeights:
    """Rename an official VideoMAE/TrackMAE state dict to motionmae's layout.

    Args:
        state: as saved by the official code (after :func:`read_state_dict`).
        source: the file name, for error messages.

    Raises:
        InteropError: not this architecture; the message names the missing and unexpected keys.
    """
    if "encoder.patch_embed.proj.weight" in state:
        layout = "pretrain"
        encoder_tree = {k[len("encoder."):]: v for k, v in state.items()
                        if k.startswith("encoder.")}
        rest = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    elif "patch_embed.proj.weight" in state:
        layout = "finetune"
        encoder_tree = {k: v for k, v in state.items()
                        if k in _ENCODER_TOP or _BLOCK.match(k)}
        rest = {k: v for k, v in state.items() if k not in encoder_tree}
    else:
        raise InteropError(
            f"{source}: not a VideoMAE/TrackMAE checkpoint: missing keys patch_embed.proj.weight "
            f"(fine-tuned layout) or encoder.patch_embed.proj.weight (pretraining layout); "
            f"its keys: {list_keys(state)}"
        )
    if "cls_token" in state or "encoder.cls_token" in state:
        raise InteropError(f"{source}: has a class token (use_cls_token); motionmae encoders "
                           "have none, so this checkpoint cannot be mapped")
    prefix = "encoder." if layout == "pretrain" else ""
    missing: list[str] = []
    unexpected = [prefix + k for k in encoder_tree
                  if k not in _ENCODER_TOP and not _BLOCK.match(k)]

    kernel = encoder_tree["patch_embed.proj.weight"]
    if kernel.ndim != 5 or kernel.shape[3] != kernel.shape[4]:
        raise InteropError(
            f"{source}: {prefix}patch_embed.proj.weight has shape {tuple(kernel.shape)}; "
            "expected a Conv3d tubelet kernel [dim, channels, tubelet, patch, patch] (an image "
            "ViT has a 2D kernel)"
        )
    encoder, depth = _convert_blocks(encoder_tree, prefix, missing, unexpected)
    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
                 "norm.bias"):
        if name in encoder_tree:
            encoder[name] = encoder_tree[name]
        elif not name.startswith("norm."):
            missing.append(prefix + name)
    if ("norm.weight" in encoder) != ("norm.bias" in encoder):
        missing.append(prefix + ("norm.bias" if "norm.weight" in encoder else "norm.weight"))
    if depth == 0:
        missing.append(prefix + "blocks.0.*")

    head: dict[str, torch.Tensor] = {}
    decoder: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    if layout == "finetune":
        head = {k: rest.pop(k) for k in _HEAD_KEYS if k in rest}
        unexpected.extend(rest)
    else:
        ignored = [k for k in rest if k.startswith(_IGNORED_PREFIXES)]
        decoder = _convert_decoder(rest, missing, unexpected)
        known = set(ignored) | {"encoder_to_decoder.weight", "mask_token"}
        unexpected.extend(k for k in rest if k not in known and not k.startswith("decoder."))
    if missing or unexpected:
        raise InteropError(
            f"{source}: does not match the VideoMAE/TrackMAE {layout} layout; "
            f"missing keys: [{list_keys(missing)}]; unexpected keys: [{list_keys(unexpected)}]"
        )

    pos = encoder_tree.get("pos_embed")
    if pos is not None:
        pos = pos.reshape(-1, pos.shape[-1])
    embed_dim = kernel.shape[0]
    return OfficialWeights(
        layout=layout,
        encoder=encoder,
        pos_embed=pos,
        embed_dim=embed_dim,
        depth=depth,
        mlp_ratio=check_mlp_ratio(embed_dim, encoder["blocks.0.mlp.fc1.weight"].shape[0],
                                  source),
        tubelet=kernel.shape[2],
        patch=kernel.shape[3],
        channels=kernel.shape[1],
        head=head,
        decoder=decoder,
        ignored=ignored,
    )
