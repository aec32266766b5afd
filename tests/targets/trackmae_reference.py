"""TrackMAE's track target as its official training step computes it, written out for the
tests from a reading of ``engine_for_pretraining_cotracker.py`` (``--upsample``): the tracker's
tracks of the frames it saw (``[:, ::2]``) are upsampled as positions, trilinearly with
``align_corners=True``; consecutive differences, the last one repeated; ``(t h w) (h2 w2) c``
token layout; ``--cotracker_norm patch`` divides by the unbiased std + 1e-6."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def official_tracks_target(seen: torch.Tensor, h: int, w: int, factor: int = 2,
                           norm: str = "patch") -> torch.Tensor:
    """``seen [B, S, h*w, 2]`` (the tracks of the ``S`` frames the tracker saw) ->
    ``[B, S*h*w, factor^2, 2]``: pixels (``norm="none"``) or patch-normalised."""
    b, s = seen.shape[:2]
    field = seen.reshape(b, s, h, w, 2).permute(0, 4, 1, 2, 3)
    up = F.interpolate(field, size=(s, h * factor, w * factor), mode="trilinear",
                       align_corners=True)  # [B, 2, S, hU, wU]
    step = up[:, :, 1:] - up[:, :, :-1]
    step = torch.cat([step, step[:, :, -1:]], dim=2)
    step = step.reshape(b, 2, s, h, factor, w, factor)
    tokens = step.permute(0, 2, 3, 5, 4, 6, 1).reshape(b, s * h * w, factor * factor, 2)
    if norm == "none":
        return tokens
    std = tokens.var(dim=2, unbiased=True, keepdim=True).sqrt()
    return (tokens - tokens.mean(dim=2, keepdim=True)) / (std + 1e-6)
