"""One entry point for every checkpoint format an encoder can come from.

- ``motionmae``: a run folder, checkpoint folder, its ``model.safetensors`` or an exported folder;
- ``huggingface``: a ``transformers`` VideoMAE folder (``config.json`` with ``model_type``
  ``"videomae"``), or a file inside it;
- ``videomae``: an official VideoMAE/TrackMAE checkpoint file (``.pth``, ``.pt``, ``.bin``,
  ``.ckpt``, or ``.safetensors`` other than ``model.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from motionmae.checkpoints.encoders import encoder_from_checkpoint
from motionmae.checkpoints.format import WEIGHTS, resolve_checkpoint
from motionmae.interop.common import describe, encoder_config
from motionmae.interop.huggingface import hf_normalisation, is_huggingface_folder, load_huggingface
from motionmae.interop.videomae import OFFICIAL_SUFFIXES, load_videomae_encoder
from motionmae.models import VideoEncoder

FORMATS = ("motionmae", "huggingface", "videomae")


def detect_format(path: str | Path) -> str:
    """Which of :data:`FORMATS` ``path`` is in (by its name and ``config.json``; not verified:
    the loaders raise with the reason if the content does not match)."""
    path = Path(path)
    if is_huggingface_folder(path):
        return "huggingface"
    if path.is_file() and path.suffix in OFFICIAL_SUFFIXES and path.name != WEIGHTS:
        return "videomae"
    return "motionmae"


def load_any_encoder(
    path: str | Path, device: str | torch.device = "cpu", **options: Any
) -> tuple[VideoEncoder, dict[str, Any]]:
    """Load an encoder from any supported format, with a checkpoint description.

    Args:
        path: see :data:`FORMATS`.
        device: where to put the encoder.
        options: for official checkpoints, :func:`load_videomae_encoder`'s keyword arguments
            (``frames``, ``size``, ``num_heads``, ``source_frames``, ``source_size``).

    Returns:
        The encoder (eval mode; ``[B, C, T, H, W]`` -> ``[B, L, D]``) and a description shaped
        like a motionmae ``config.json`` (``kind``, ``model``, ``grid``, ``data``; a motionmae
        checkpoint's own, which adds ``config`` with the training settings).
    """
    fmt = detect_format(path)
    if fmt == "motionmae":
        if options:
            raise TypeError(f"options {sorted(options)} apply to official checkpoints only")
        return encoder_from_checkpoint(resolve_checkpoint(path), device)
    if fmt == "huggingface":
        encoder, grid = load_huggingface(path)
        mean, std = hf_normalisation(path)
        description = describe("huggingface", encoder_config(encoder), grid, str(path), mean, std)
    else:
        encoder, grid = load_videomae_encoder(path, **options)
        description = describe("videomae", encoder_config(encoder), grid, str(path))
    return encoder.to(device).eval(), description
