"""The Python entry points that mirror the command line."""

from __future__ import annotations

from pathlib import Path

import torch

from motionmae.checkpoints.encoders import encoder_from_checkpoint
from motionmae.checkpoints.format import resolve_checkpoint
from motionmae.interop import detect_format, load_any_encoder
from motionmae.models import VideoEncoder


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> VideoEncoder:
    """Load a pretrained encoder from a run folder (its latest checkpoint), a checkpoint
    folder or file, or an exported folder; also from a ``transformers`` VideoMAE folder or an
    official VideoMAE/TrackMAE ``.pth`` file (see :mod:`motionmae.interop`).

    The returned module maps a normalised clip ``[B, C, T, H, W]`` to tokens ``[B, L, D]``
    (all tokens visible, after the final norm; fine-tuned VideoMAE models have none). It is in
    eval mode.
    """
    if detect_format(path) != "motionmae":
        return load_any_encoder(path, device)[0]
    encoder, _ = encoder_from_checkpoint(resolve_checkpoint(path), device)
    return encoder
