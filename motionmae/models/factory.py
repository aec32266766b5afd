"""Build models from a named size or a :class:`ModelConfig`, with field overrides."""

from __future__ import annotations

import dataclasses
from typing import Any

from motionmae.models.config import ModelConfig
from motionmae.models.vit import MaskedVideoModel, VideoEncoder
from motionmae.tokens import TokenGrid


def model_config(size_or_cfg: str | ModelConfig, **overrides: Any) -> ModelConfig:
    """A validated, resolved :class:`ModelConfig` from a size name (``tiny``, ``small``,
    ``base``, ``large``; see ``config.MODEL_SIZES``) or a config, with fields overridden."""
    return _validated(size_or_cfg, **overrides).resolved()


def _validated(size_or_cfg: str | ModelConfig, **overrides: Any) -> ModelConfig:
    if isinstance(size_or_cfg, str):
        cfg = ModelConfig(size=size_or_cfg, **overrides)
    else:
        cfg = dataclasses.replace(size_or_cfg, **overrides)
    cfg.validate()
    return cfg


def create_model(
    size_or_cfg: str | ModelConfig,
    grid: TokenGrid,
    target_dims: dict[str, int] | None = None,
    **overrides: Any,
) -> MaskedVideoModel:
    """The pretraining model; ``target_dims`` defaults to ``{"pixel": grid.patch_dim}``.

    Example: ``create_model("small", TokenGrid(16, 224, 224), decoder_depth=2)``.
    """
    # Resolved by the model, which knows how many decoders it builds (the blocks per decoder).
    return MaskedVideoModel(_validated(size_or_cfg, **overrides), grid,
                            target_dims or {"pixel": grid.patch_dim})


def create_encoder(
    size_or_cfg: str | ModelConfig, grid: TokenGrid, **overrides: Any
) -> VideoEncoder:
    """Just the encoder (for feature extraction, probing and fine-tuning)."""
    return VideoEncoder(model_config(size_or_cfg, **overrides), grid)
