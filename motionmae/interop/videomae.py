"""Official VideoMAE / TrackMAE checkpoints (``.pth``) as motionmae models.

:func:`load_videomae_encoder`, :func:`load_videomae_classifier` and
:func:`load_videomae_pretrain` read a file (:mod:`~motionmae.interop.videomae_file`), rename
its tensors (:mod:`~motionmae.interop.videomae_keys`, which describes the official layouts),
and build the model for the requested clip geometry: a fixed sin-cos position table is
regenerated for it, a learned one resampled to it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
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
from motionmae.interop.videomae_file import OFFICIAL_SUFFIXES, read_state_dict
from motionmae.interop.videomae_keys import OfficialWeights, convert_official
from motionmae.models import MaskedVideoModel, VideoClassifier, VideoEncoder
from motionmae.tokens import TokenGrid

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_SIZE",
    "OFFICIAL_SUFFIXES",
    "OfficialWeights",
    "convert_official",
    "load_videomae_classifier",
    "load_videomae_encoder",
    "load_videomae_pretrain",
    "read_state_dict",
]

log = logging.getLogger(__name__)

DEFAULT_FRAMES = 16  # VideoMAE's ``num_frames`` / ``all_frames``
DEFAULT_SIZE = 224


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
