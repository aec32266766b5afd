"""The Python entry points that mirror the command line."""

from __future__ import annotations

from pathlib import Path

import torch

from motionmae.config import ModelConfig, from_dict
from motionmae.models import VideoEncoder
from motionmae.tokens import TokenGrid
from motionmae.train.checkpoint import Checkpoint, resolve_checkpoint


def encoder_from_checkpoint(checkpoint: Checkpoint, device: str | torch.device = "cpu"
                            ) -> tuple[VideoEncoder, dict]:
    """Build the encoder a checkpoint describes and load its weights; returns it with the
    checkpoint's description (``config.json``)."""
    description = checkpoint.config()
    model_cfg = from_dict(ModelConfig, description["model"], "model")
    grid = TokenGrid(**description["grid"])
    encoder = VideoEncoder(model_cfg, grid)
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
