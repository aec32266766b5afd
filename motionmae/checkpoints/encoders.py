"""Build the encoder a motionmae checkpoint describes, and load its weights.

Below :mod:`motionmae.api`, :mod:`motionmae.interop` and :mod:`motionmae.eval`, which all
read encoders out of checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from motionmae.checkpoints.format import Checkpoint
from motionmae.config_loading import from_dict
from motionmae.models import VideoEncoder
from motionmae.models.config import ModelConfig, saved_model_dict
from motionmae.tokens import TokenGrid


def encoder_from_description(description: dict) -> VideoEncoder:
    """An encoder (random weights) as a checkpoint description (``config.json``) describes
    it: ``model``, ``grid`` and, for encoders that came from other formats, ``encoder``
    (``final_norm``: false for mean-pooling VideoMAE models; ``layer_norm_eps``)."""
    model_cfg = from_dict(ModelConfig, saved_model_dict(description["model"]), "model")
    encoder = VideoEncoder(model_cfg, TokenGrid(**description["grid"]))
    options = description.get("encoder", {})
    if not options.get("final_norm", True):
        encoder.norm = nn.Identity()
    if "layer_norm_eps" in options:
        for module in encoder.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = options["layer_norm_eps"]
    return encoder


def encoder_from_checkpoint(checkpoint: Checkpoint, device: str | torch.device = "cpu"
                            ) -> tuple[VideoEncoder, dict]:
    """Build the encoder a checkpoint describes and load its weights; returns it with the
    checkpoint's description (``config.json``)."""
    description = checkpoint.config()
    encoder = encoder_from_description(description)
    prefix = "encoder."
    weights = {k[len(prefix):]: v for k, v in checkpoint.weights().items()
               if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{checkpoint.path}: no encoder weights (keys starting with {prefix!r})")
    encoder.load_state_dict(weights)
    return encoder.to(device).eval(), description
