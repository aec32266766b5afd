"""What the learned token sampler sees of a clip: parameter-free per-token inputs.

Per token ``(t, h, w)`` (``F = C * tubelet * THUMB**2 + NUM_MOTION_FEATURES`` values):

- **thumbnail**: the tubelet average-pooled to ``THUMB x THUMB`` pixels per frame. The
  sampler decides *where* to look, which needs a coarse view, not the full patch; a thumbnail
  is 16x cheaper to embed at 16 px patches and small enough to keep for PPO's later epochs.
- **frame-difference energy**: ``log1p`` of the mean squared difference between consecutive
  frames over the tubelet's pixels (the pairs starting in the tubelet; the clip is
  normalised, so the units are those of the model input). Always available.
- **track statistics** when the batch has point tracks (``batch["tracks"] [B, T, h*w, 2]``,
  the patch-centre points of :class:`motionmae.motion.hooks.TracksHook`, and optionally
  ``batch["track_visible"] [B, T, h*w]``): over the frame-to-frame steps that start in the
  tubelet and are visible at both ends, the mean step ``(dx, dy)`` and ``log1p`` of the mean
  and of the largest step length, in patches per frame (so the scale does not depend on the
  resolution), and the fraction of visible steps; zeros without tracks.
- **has tracks**: 1 when the track statistics are real, 0 when they are the zero fill.

All inputs are computed without gradients from the batch alone, so a stored copy reproduces
the policy's input exactly after its parameters change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from motionmae.tokens import TokenGrid

__all__ = [
    "NUM_MOTION_FEATURES",
    "THUMB",
    "frame_difference_energy",
    "input_dim",
    "sampler_inputs",
    "track_statistics",
    "tubelet_thumbnails",
]

THUMB = 4
NUM_TRACK_FEATURES = 5
NUM_MOTION_FEATURES = 1 + NUM_TRACK_FEATURES + 1


def input_dim(grid: TokenGrid) -> int:
    """Values per token of :func:`sampler_inputs`."""
    return grid.channels * grid.tubelet * THUMB * THUMB + NUM_MOTION_FEATURES


def tubelet_thumbnails(clip: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, L, C * tubelet * THUMB**2]`` float32: every tubelet frame
    average-pooled to ``THUMB x THUMB`` pixels, values ordered (c, frame, y, x)."""
    pooled = F.adaptive_avg_pool3d(clip.float(), (grid.frames, grid.h * THUMB, grid.w * THUMB))
    return rearrange(pooled, "b c (t u) (h y) (w x) -> b (t h w) (c u y x)",
                     u=grid.tubelet, y=THUMB, x=THUMB)


def _starts_in_tubelet(values: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """``[B, T-1, ...]`` per frame pair -> ``[B, t, tubelet, ...]``, pair ``f -> f+1`` filed
    under frame ``f``'s tubelet (the last frame starts no pair: zero-filled)."""
    pad = torch.zeros_like(values[:, :1])
    return torch.cat([values, pad], dim=1).unflatten(1, (grid.t, grid.tubelet))


def frame_difference_energy(clip: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, L]`` float32: ``log1p`` of the mean over the token's pixels
    and channels of the squared frame-to-frame difference, over the pairs starting in its
    tubelet (0 for a 1-frame clip)."""
    clip = clip.float()
    energy = (clip[:, :, 1:] - clip[:, :, :-1]).square().mean(dim=1)  # [B, T-1, H, W]
    per_tubelet = _starts_in_tubelet(energy, grid)  # [B, t, u, H, W]
    summed = per_tubelet.sum(dim=2).unflatten(2, (grid.h, grid.patch)).unflatten(
        4, (grid.w, grid.patch)).sum(dim=(3, 5))  # [B, t, h, w]
    pairs = torch.full((grid.t,), float(grid.tubelet), device=clip.device)
    pairs[-1] -= 1  # the clip's last frame starts no pair
    mean = summed / (pairs.clamp_min(1.0) * grid.patch * grid.patch).view(1, -1, 1, 1)
    return torch.log1p(mean).flatten(1)


def track_statistics(
    tracks: torch.Tensor, visible: torch.Tensor | None, grid: TokenGrid
) -> torch.Tensor:
    """Displacement statistics of each token's patch-centre track (see the module docstring).

    Args:
        tracks: ``[B, T, h*w, 2]`` ``(x, y)`` pixels, ``T = grid.frames``.
        visible: ``[B, T, h*w]`` bool, or ``None`` (all visible).
        grid: the token grid.

    Returns:
        ``[B, L, 5]`` float32: mean dx, mean dy, ``log1p`` mean step length, ``log1p``
        largest step length (patches per frame), fraction of visible steps.
    """
    expected = (grid.frames, grid.spatial, 2)
    if tracks.ndim != 4 or tuple(tracks.shape[1:]) != expected:
        raise ValueError(f"batch['tracks']: expected [B, {expected[0]}, {expected[1]}, 2] "
                         f"(clip frames, patch centres h*w, xy), got {tuple(tracks.shape)}")
    tracks = tracks.float()
    step = (tracks[:, 1:] - tracks[:, :-1]) / grid.patch  # [B, T-1, N, 2]
    if visible is None:
        valid = torch.ones(step.shape[:-1], device=step.device)
    else:
        valid = (visible[:, 1:] & visible[:, :-1]).float()
    step, valid = _starts_in_tubelet(step, grid), _starts_in_tubelet(valid, grid)
    count = valid.sum(dim=2)  # [B, t, N]
    mean_step = (step * valid.unsqueeze(-1)).sum(dim=2) / count.clamp_min(1.0).unsqueeze(-1)
    length = torch.linalg.vector_norm(step, dim=-1) * valid  # [B, t, u, N]
    mean_length = length.sum(dim=2) / count.clamp_min(1.0)
    stats = torch.stack([mean_step[..., 0], mean_step[..., 1], torch.log1p(mean_length),
                         torch.log1p(length.amax(dim=2)), count / grid.tubelet], dim=-1)
    return stats.flatten(1, 2)  # [B, t*N, 5], token order (t, h, w)


def sampler_inputs(batch: dict[str, torch.Tensor], grid: TokenGrid) -> torch.Tensor:
    """The sampler's per-token inputs: ``batch["clip"] [B, C, T, H, W]`` (and the tracks, if
    present) -> ``[B, L, input_dim(grid)]`` float32 (module docstring), without gradients."""
    with torch.no_grad():
        clip = batch["clip"]
        b = clip.shape[0]
        thumbs = tubelet_thumbnails(clip, grid)
        energy = frame_difference_energy(clip, grid).unsqueeze(-1)
        if "tracks" in batch:
            tracks = track_statistics(batch["tracks"], batch.get("track_visible"), grid)
            has_tracks = torch.ones(b, grid.num_tokens, 1, device=clip.device)
        else:
            tracks = torch.zeros(b, grid.num_tokens, NUM_TRACK_FEATURES, device=clip.device)
            has_tracks = torch.zeros(b, grid.num_tokens, 1, device=clip.device)
        return torch.cat([thumbs, energy, tracks, has_tracks], dim=-1)
