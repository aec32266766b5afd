"""Pieces shared by the foreign-format readers and writers: the error type, the head-count
table, and the checkpoint description (the ``config.json`` of a motionmae checkpoint) that a
foreign model is given so the rest of the library can treat it like one of ours."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from torch import nn

from motionmae.checkpoints.format import CheckpointError
from motionmae.config_loading import to_dict
from motionmae.data.config import IMAGENET_MEAN, IMAGENET_STD
from motionmae.models.config import MODEL_SIZES, ModelConfig
from motionmae.tokens import TokenGrid

# embed_dim -> attention heads of the published ViT sizes (head dim 64; ViT-H 80, ViT-g 88).
# Heads cannot be read off the weights (the qkv matrix is the same for any head count).
HEADS_BY_DIM: dict[int, int] = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}
# decoder_embed_dim -> decoder heads of the official VideoMAE pretraining models.
DECODER_HEADS_BY_DIM: dict[int, int] = {192: 3, 384: 6, 512: 8, 640: 8}


class InteropError(CheckpointError):
    """A foreign checkpoint cannot be read or mapped onto a motionmae model; says why."""


def list_keys(keys: Iterable[str], limit: int = 8) -> str:
    """``a, b, c (+N more)``: key names for an error message, sorted."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def heads_for(dim: int, given: int | None, table: dict[int, int], what: str) -> int:
    """The head count: ``given`` if set (checked), else from ``table``; raises if unknown."""
    heads = given if given is not None else table.get(dim)
    if heads is None:
        raise InteropError(
            f"cannot infer the number of {what} attention heads for width {dim} (known widths: "
            f"{sorted(table)}); pass it explicitly"
        )
    if dim % heads:
        raise InteropError(f"{what} width {dim} is not divisible by {heads} heads")
    return heads


def model_config(embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, tubelet: int,
                 patch: int, difference_gain: float = 0.0, positions: str = "1d",
                 **decoder: int) -> ModelConfig:
    """A resolved :class:`ModelConfig` for these dimensions, named after the matching size in
    ``MODEL_SIZES`` when there is one (``decoder``: optional decoder_dim/_depth/_heads).
    ``difference_gain`` 0: the tubelet kernel reads plain frames, as VideoMAE's does."""
    size = next((name for name, dims in MODEL_SIZES.items()
                 if dims[:3] == (embed_dim, depth, num_heads)), "tiny")
    cfg = ModelConfig(size=size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                      mlp_ratio=mlp_ratio, patch_size=patch, tubelet_size=tubelet,
                      difference_gain=difference_gain, positions=positions, **decoder)
    cfg.validate()
    return cfg.resolved()


def check_mlp_ratio(dim: int, hidden: int, what: str) -> float:
    """``hidden / dim``, checked to rebuild exactly ``hidden`` units (``int(dim * ratio)``)."""
    ratio = hidden / dim
    if int(dim * ratio) != hidden:
        raise InteropError(f"{what}: MLP width {hidden} for width {dim} cannot be rebuilt")
    return ratio


def grid_dict(grid: TokenGrid) -> dict[str, int]:
    """The ``grid`` section of a checkpoint description."""
    return dataclasses.asdict(grid)


def describe(kind: str, cfg: ModelConfig, grid: TokenGrid, source: str,
             mean: Iterable[float] = IMAGENET_MEAN, std: Iterable[float] = IMAGENET_STD,
             **extra: Any) -> dict[str, Any]:
    """A checkpoint description (as ``config.json``) for a model read from a foreign format:
    ``kind`` (e.g. ``"videomae"``), ``model``, ``grid``, ``data`` (normalisation), ``source``."""
    return {"kind": kind, "model": to_dict(cfg), "grid": grid_dict(grid),
            "data": {"mean": list(mean), "std": list(std)}, "source": source, **extra}


def set_layer_norm_eps(module: nn.Module, eps: float) -> None:
    """Set ``eps`` of every LayerNorm in ``module`` (foreign models differ: HF uses 1e-12)."""
    for layer in module.modules():
        if isinstance(layer, nn.LayerNorm):
            layer.eps = eps


def encoder_config(encoder: nn.Module) -> ModelConfig:
    """The :class:`ModelConfig` of a built :class:`~motionmae.models.VideoEncoder`, read off
    its modules (what a checkpoint description stores under ``model``)."""
    block = encoder.blocks[0]
    return model_config(
        encoder.embed_dim, encoder.depth, block.attn.num_heads,
        block.mlp.fc1.out_features / encoder.embed_dim, encoder.grid.tubelet, encoder.grid.patch,
        difference_gain=encoder.patch_embed.difference_gain, positions=encoder.positions,
    )
