"""Official VideoMAE / TrackMAE checkpoints (``.pth``) as motionmae models.

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

Files are read with ``torch.load(weights_only=True)``: a file that needs arbitrary code to
unpickle is refused (``argparse.Namespace``, which the official trainer saves as ``args``, is
the one class allowed besides tensors and containers).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from motionmae.interop.common import (
    DECODER_HEADS_BY_DIM,
    HEADS_BY_DIM,
    InteropError,
    check_mlp_ratio,
    heads_for,
    list_keys,
    model_config,
)
from motionmae.interop.positions import (
    Layout,
    infer_layout,
    interpolate_positions,
    is_sinusoid_table,
)
from motionmae.models import MaskedVideoModel, VideoClassifier, VideoEncoder
from motionmae.tokens import TokenGrid

log = logging.getLogger(__name__)

OFFICIAL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
DEFAULT_FRAMES = 16  # VideoMAE's ``num_frames`` / ``all_frames``
DEFAULT_SIZE = 224

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
_WRAPPERS = ("model", "module", "state_dict", "model_state")


# --------------------------------------------------------------------------------------------
# Reading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint file, unwrapped (``model``/``module`` key) and
    without a DistributedDataParallel ``module.`` prefix.

    Raises:
        InteropError: the file is missing, is not a PyTorch/safetensors checkpoint, needs code
            to unpickle (refused), or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InteropError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as error:
            raise InteropError(f"{path}: not a safetensors file ({error})") from error
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "weights only" in text.lower():
            # torch's message: a generic paragraph, then the offending global
            detail = next((line.strip() for line in text.splitlines()
                           if "GLOBAL" in line or "Unsupported" in line), "")
            raise InteropError(
                f"{path}: refused to load: the file holds Python objects that only arbitrary "
                f"code could rebuild, and it is read with torch.load(weights_only=True)"
                + (f" ({detail})" if detail else "")
                + ". Convert a checkpoint you trust to plain tensors first."
            ) from error
        raise InteropError(f"{path}: not a PyTorch checkpoint ({text})") from error
    except Exception as error:  # garbage input fails anywhere in the unpickler
        raise InteropError(
            f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from error
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise InteropError(f"{path}: no state dict found (expected a dict of tensors, possibly "
                           f"under one of {list(_WRAPPERS)})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InteropError(f"{path}: no tensors found; top-level keys: {list_keys(obj)}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


# --------------------------------------------------------------------------------------------
# Converting


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


# --------------------------------------------------------------------------------------------
# Building models


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _layout_of(frames: int, size: tuple[int, int], tubelet: int, patch: int) -> Layout:
    return frames // tubelet, size[0] // patch, size[1] // patch


def _plan_grid(
    weights: OfficialWeights,
    frames: int | None,
    size: int | tuple[int, int] | None,
    source_frames: int | None,
    source_size: int | tuple[int, int] | None,
) -> tuple[TokenGrid, torch.Tensor | None]:
    """The target grid and, for a learned position table, the table resampled to it."""
    tubelet, patch = weights.tubelet, weights.patch
    pos = weights.pos_embed
    if source_frames is not None or source_size is not None:
        source = _layout_of(source_frames or DEFAULT_FRAMES,
                            _pair(source_size or DEFAULT_SIZE), tubelet, patch)
    elif pos is not None:
        source = infer_layout(pos.shape[0], (frames or DEFAULT_FRAMES) // tubelet)
    else:
        source = _layout_of(DEFAULT_FRAMES, (DEFAULT_SIZE, DEFAULT_SIZE), tubelet, patch)
    height, width = _pair(size) if size is not None else (source[1] * patch, source[2] * patch)
    grid = TokenGrid(frames=frames if frames is not None else source[0] * tubelet,
                     height=height, width=width, tubelet=tubelet, patch=patch,
                     channels=weights.channels)
    if pos is None or is_sinusoid_table(pos):
        return grid, None  # fixed table: VideoEncoder regenerates it for the grid
    target = (grid.t, grid.h, grid.w)
    if tuple(target) != tuple(source):
        log.info("resampling the learned position table from %s to %s tokens (t, h, w)",
                 source, target)
    return grid, interpolate_positions(pos, source, target)


def _build_encoder(weights: OfficialWeights, encoder: VideoEncoder,
                   pos: torch.Tensor | None, source: str) -> VideoEncoder:
    if not weights.has_norm:
        log.info("%s has no final norm (fine-tuned with mean pooling): the encoder returns the "
                 "last block's tokens, as VideoMAE does", source)
        encoder.norm = nn.Identity()
    result = encoder.load_state_dict(weights.encoder, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InteropError(f"{source}: missing keys [{list_keys(result.missing_keys)}]; "
                           f"unexpected keys [{list_keys(result.unexpected_keys)}]")
    if pos is not None:
        with torch.no_grad():
            encoder.pos_embed.copy_(pos.unsqueeze(0))
    return encoder


def load_videomae_encoder(
    path: str | Path,
    *,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    num_heads: int | None = None,
    source_frames: int | None = None,
    source_size: int | tuple[int, int] | None = None,
) -> tuple[VideoEncoder, TokenGrid]:
    """The encoder of an official VideoMAE/TrackMAE checkpoint (pretrained or fine-tuned).

    Args:
        path: ``.pth`` (or ``.pt``/``.bin``/``.safetensors``) file in the official layout.
        frames, size: clip geometry to build the encoder for (``size`` an int or ``(H, W)``);
            default: the checkpoint's own (from a saved position table), else 16 x 224.
        num_heads: attention heads; default from the width (ViT-S 6, B 12, L 16, H 16).
        source_frames, source_size: the geometry the checkpoint was trained at, if its saved
            position table cannot be factored unambiguously.

    Returns:
        The encoder (eval mode; maps ``[B, C, T, H, W]`` to ``[B, L, D]``) and its grid. A
        fine-tuned (mean-pooling) checkpoint has no final norm: ``encoder.norm`` is identity.
    """
    weights = convert_official(read_state_dict(path), str(path))
    _log_parts(weights, str(path), mapped_head=False, mapped_decoder=False)
    encoder, grid = _official_encoder(weights, str(path), frames, size, num_heads,
                                      source_frames, source_size)
    return encoder.eval(), grid


def load_videomae_classifier(
    path: str | Path,
    *,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    num_heads: int | None = None,
    source_frames: int | None = None,
    source_size: int | tuple[int, int] | None = None,
) -> tuple[VideoClassifier, TokenGrid]:
    """An official fine-tuned checkpoint (mean pooling, ``fc_norm`` + ``head``) as a
    :class:`VideoClassifier` (eval mode) computing the same logits. Arguments as
    :func:`load_videomae_encoder`."""
    weights = convert_official(read_state_dict(path), str(path))
    if not {"head.weight", "head.bias"} <= weights.head.keys():
        raise InteropError(f"{path}: no classification head (head.weight/head.bias); a "
                           "pretraining checkpoint? Load it with load_videomae_encoder")
    if "fc_norm.weight" not in weights.head or weights.has_norm:
        raise InteropError(f"{path}: the head does not use mean pooling (fc_norm); "
                           "VideoMAE then classifies the first token, which motionmae does "
                           "not support")
    _log_parts(weights, str(path), mapped_head=True, mapped_decoder=False)
    encoder, grid = _official_encoder(weights, str(path), frames, size, num_heads,
                                      source_frames, source_size)
    model = VideoClassifier(encoder, num_classes=weights.head["head.weight"].shape[0])
    model.fc_norm.load_state_dict({"weight": weights.head["fc_norm.weight"],
                                   "bias": weights.head["fc_norm.bias"]})
    model.head.load_state_dict({"weight": weights.head["head.weight"],
                                "bias": weights.head["head.bias"]})
    return model.eval(), grid


def load_videomae_pretrain(
    path: str | Path,
    *,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    num_heads: int | None = None,
    decoder_heads: int | None = None,
    source_frames: int | None = None,
    source_size: int | tuple[int, int] | None = None,
) -> tuple[MaskedVideoModel, TokenGrid]:
    """An official pretraining checkpoint as a :class:`MaskedVideoModel` whose ``pixel``
    decoder is VideoMAE's decoder (same predictions for the same mask; VideoMAE's pixel target
    orders a tubelet's values (frame, row, column, channel) like ``targets.pixel``).

    TrackMAE's ``tracker_decoder`` is not mapped (its target layout is TrackMAE's own).
    ``decoder_heads`` defaults from the decoder width (192: 3, 384: 6, 512: 8, 640: 8); other
    arguments as :func:`load_videomae_encoder`.
    """
    weights = convert_official(read_state_dict(path), str(path))
    if not weights.decoder:
        raise InteropError(f"{path}: no decoder (decoder.*); not a pretraining checkpoint")
    _log_parts(weights, str(path), mapped_head=False, mapped_decoder=True)
    grid, pos = _plan_grid(weights, frames, size, source_frames, source_size)
    decoder_dim = weights.decoder["mask_token"].shape[-1]
    decoder_depth = 1 + max(int(k.split(".")[1]) for k in weights.decoder
                            if k.startswith("blocks."))
    check = check_mlp_ratio(decoder_dim, weights.decoder["blocks.0.mlp.fc1.weight"].shape[0],
                            f"{path} decoder")
    if check != weights.mlp_ratio:
        raise InteropError(f"{path}: decoder MLP ratio {check} differs from the encoder's "
                           f"{weights.mlp_ratio}; motionmae shares one")
    cfg = model_config(
        weights.embed_dim, weights.depth,
        heads_for(weights.embed_dim, num_heads, HEADS_BY_DIM, "encoder"),
        weights.mlp_ratio, weights.tubelet, weights.patch,
        decoder_dim=decoder_dim, decoder_depth=decoder_depth,
        decoder_heads=heads_for(decoder_dim, decoder_heads, DECODER_HEADS_BY_DIM, "decoder"),
    )
    model = MaskedVideoModel(cfg, grid, {"pixel": weights.decoder["head.weight"].shape[0]})
    _build_encoder(weights, model.encoder, pos, str(path))
    model.decoders["pixel"].load_state_dict(weights.decoder)
    return model.eval(), grid


def _official_encoder(weights: OfficialWeights, source: str, frames: int | None,
                      size: int | tuple[int, int] | None, num_heads: int | None,
                      source_frames: int | None, source_size: int | tuple[int, int] | None
                      ) -> tuple[VideoEncoder, TokenGrid]:
    """The encoder an official checkpoint describes, for the requested clip geometry."""
    grid, pos = _plan_grid(weights, frames, size, source_frames, source_size)
    cfg = model_config(weights.embed_dim, weights.depth,
                       heads_for(weights.embed_dim, num_heads, HEADS_BY_DIM, "encoder"),
                       weights.mlp_ratio, weights.tubelet, weights.patch)
    return _build_encoder(weights, VideoEncoder(cfg, grid), pos, source), grid


def _log_parts(weights: OfficialWeights, source: str, mapped_head: bool,
               mapped_decoder: bool) -> None:
    if weights.head and not mapped_head:
        log.info("%s: classification head (fc_norm/head) not loaded into the encoder", source)
    if weights.decoder and not mapped_decoder:
        log.info("%s: pretraining decoder ignored (load_videomae_pretrain maps it)", source)
    if weights.ignored:
        log.info("%s: ignored %s", source, list_keys(weights.ignored))
