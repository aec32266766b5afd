"""The Python entry points that mirror the command line."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from motionmae.config import ModelConfig, from_dict, saved_model_dict
from motionmae.models import VideoEncoder
from motionmae.tokens import TokenGrid
from motionmae.train.checkpoint import Checkpoint, resolve_checkpoint


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


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> VideoEncoder:
    """Load a pretrained encoder from a run folder (its latest checkpoint), a checkpoint
    folder or file, or an exported folder; also from a ``transformers`` VideoMAE folder or an
    official VideoMAE/TrackMAE ``.pth`` file (see :mod:`motionmae.interop`).

    The returned module maps a normalised clip ``[B, C, T, H, W]`` to tokens ``[B, L, D]``
    (all tokens visible, after the final norm; fine-tuned VideoMAE models have none). It is in
    eval mode.
    """
    from motionmae.interop import detect_format, load_any_encoder  # it imports this module

    if detect_format(path) != "motionmae":
        return load_any_encoder(path, device)[0]
    encoder, _ = encoder_from_checkpoint(resolve_checkpoint(path), device)
    return encoder
