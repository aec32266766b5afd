"""What the learned token sampler sees of a clip: parameter-free per-token inputs.

Per token ``(t, h, w)`` (``F = C * tubelet * THUMB**2 + NUM_MOTION_FEATURES`` values):

- **thumbnail**: the tubelet average-pooled to ``THUMB x THUMB`` pixels per frame. The
  sampler decides *where* to look, which needs a coarse view, not the full patch; a thumbnail
  is 16x cheaper to embed at 16 px patches and small enough to keep for PPO's later epochs.
- **frame-difference energy**: ``log1p`` of the mean squared difference between consecutive
  frames over the tubelet's pixels (the pairs starting in the tubelet; the clip is
  normalised, so the units are those of the model input). Always available.
- **track statistics** when the batch has point tracks (``batch["tracks"] [B, T, N, 2]``,
  e.g. the patch-centre points of :class:`motionmae.motion.hooks.TracksHook`, and optionally
  ``batch["track_visible"] [B, T, N]``): the motion *at the token's place and time*, from the
  points that are at its patch when its tubelet starts (wherever they started), splatted
  bilinearly onto the patch grid: their mean step ``(dx, dy)`` and ``log1p`` of the mean
  and of the largest step length over the tubelet, in patches per frame (so the scale does
  not depend on the resolution), the fraction of their steps that are visible, and the
  coverage (how much tracked point is there); zeros without tracks
  (:func:`track_statistics`).
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
NUM_TRACK_FEATURES = 6
_TINY = 1e-6  # a denominator floor: zero sums stay zero
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


def _pairs_per_tubelet(grid: TokenGrid, device: torch.device) -> torch.Tensor:
    """``[t]`` float32: frame pairs starting in each tubelet (``tubelet``; one fewer in the
    last, whose last frame is the clip's)."""
    pairs = torch.full((grid.t,), float(grid.tubelet), device=device)
    pairs[-1] -= 1
    return pairs


def frame_difference_energy(clip: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, L]`` float32: ``log1p`` of the mean over the token's pixels
    and channels of the squared frame-to-frame difference, over the pairs starting in its
    tubelet (0 for a 1-frame clip)."""
    clip = clip.float()
    energy = (clip[:, :, 1:] - clip[:, :, :-1]).square().mean(dim=1)  # [B, T-1, H, W]
    per_tubelet = _starts_in_tubelet(energy, grid)  # [B, t, u, H, W]
    summed = per_tubelet.sum(dim=2).unflatten(2, (grid.h, grid.patch)).unflatten(
        4, (grid.w, grid.patch)).sum(dim=(3, 5))  # [B, t, h, w]
    pairs = _pairs_per_tubelet(grid, clip.device)
    mean = summed / (pairs.clamp_min(1.0) * grid.patch * grid.patch).view(1, -1, 1, 1)
    return torch.log1p(mean).flatten(1)


def _splat_weights(points: torch.Tensor, grid: TokenGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear weights of points on the patch-centre grid.

    Args:
        points: ``[..., N, 2]`` ``(x, y)`` pixels (pixel centres at integers).
        grid: the token grid (patch centre ``(j * patch + patch / 2 - 0.5)`` is cell ``j``).

    Returns:
        ``(index [..., 4N] int64, weight [..., 4N] float32)``: for each point its 4
        neighbouring cells ``y * w + x`` and their bilinear weights, 0 for cells outside the
        grid (their index is clamped into it). A point on a patch centre weighs 1 there.
    """
    cell = (points + 0.5) / grid.patch - 0.5  # patch-centre units
    base = cell.floor()
    frac = cell - base
    index, weight = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            cx, cy = base[..., 0] + dx, base[..., 1] + dy
            wx = frac[..., 0] if dx else 1.0 - frac[..., 0]
            wy = frac[..., 1] if dy else 1.0 - frac[..., 1]
            inside = (cx >= 0) & (cx < grid.w) & (cy >= 0) & (cy < grid.h)
            weight.append(wx * wy * inside)
            index.append(cy.clamp(0, grid.h - 1).long() * grid.w
                         + cx.clamp(0, grid.w - 1).long())
    return torch.cat(index, dim=-1), torch.cat(weight, dim=-1)


def track_statistics(
    tracks: torch.Tensor, visible: torch.Tensor | None, grid: TokenGrid
) -> torch.Tensor:
    """Motion at each token's own place and time, from point tracks.

    Token ``(t, h, w)`` gets the motion of the points that are *at patch (h, w) when tubelet
    t starts* (frame ``t * tubelet``), wherever they started: every point visible at that
    frame is splatted bilinearly onto the patch-centre grid at its position there, carrying
    its frame-to-frame steps over the tubelet (the steps that start in the tubelet and are
    visible at both ends). A token's statistics are the splat-weighted means over its
    points, so an object that moves from patch A to patch B gives its motion to A in the
    early tubelets and to B in the late ones, and none to A once it has left.

    Args:
        tracks: ``[B, T, N, 2]`` ``(x, y)`` pixels, ``T = grid.frames``, any ``N`` points
            (:class:`~motionmae.motion.hooks.TracksHook` gives the ``h*w`` patch centres of
            frame 0).
        visible: ``[B, T, N]`` bool, or ``None`` (all visible).
        grid: the token grid.

    Returns:
        ``[B, L, 6]`` float32 in token order: mean step ``dx``, ``dy``, ``log1p`` of the mean
        and of the (weight-averaged) largest step length, all in patches per frame; fraction of
        the points' steps that are visible; coverage, the summed splat weight (about 1 where
        the tracked grid is intact, 0 where no tracked point is, e.g. disoccluded background).
        A token without points is all zeros.
    """
    if tracks.ndim != 4 or tracks.shape[1] != grid.frames or tracks.shape[-1] != 2:
        raise ValueError(f"batch['tracks']: expected [B, {grid.frames}, N, 2] (clip frames, "
                         f"points, xy), got {tuple(tracks.shape)}")
    # Trackers may leave anything at invisible points: it must not reach the sums.
    tracks = torch.nan_to_num(tracks.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if visible is None:
        visible = torch.ones(tracks.shape[:-1], dtype=torch.bool, device=tracks.device)
    step = (tracks[:, 1:] - tracks[:, :-1]) / grid.patch  # [B, T-1, N, 2]
    valid = _starts_in_tubelet(visible[:, 1:] & visible[:, :-1], grid)  # [B, t, u, N]
    step = torch.where(valid.unsqueeze(-1), _starts_in_tubelet(step, grid), 0.0)
    length = torch.linalg.vector_norm(step, dim=-1)  # [B, t, u, N], 0 where invalid
    valid = valid.float()
    per_point = torch.stack([step[..., 0].sum(dim=2), step[..., 1].sum(dim=2),
                             valid.sum(dim=2), length.sum(dim=2), length.amax(dim=2),
                             torch.ones_like(length[:, :, 0])], dim=-1)  # [B, t, N, 6]
    start = slice(None, None, grid.tubelet)
    index, weight = _splat_weights(tracks[:, start], grid)  # [B, t, 4N]
    weight = weight * visible[:, start].float().repeat(1, 1, 4)
    b, t = per_point.shape[:2]
    sums = per_point.new_zeros(b, t, grid.spatial, per_point.shape[-1]).scatter_add(
        2, index.unsqueeze(-1).expand(-1, -1, -1, per_point.shape[-1]),
        per_point.repeat(1, 1, 4, 1) * weight.unsqueeze(-1))  # [B, t, h*w, 6]
    dx, dy, count, total_length, largest, coverage = sums.unbind(-1)
    steps = coverage * _pairs_per_tubelet(grid, tracks.device).view(1, -1, 1)
    per_step = count.clamp_min(_TINY)
    stats = torch.stack([dx / per_step, dy / per_step, torch.log1p(total_length / per_step),
                         torch.log1p(largest / coverage.clamp_min(_TINY)),
                         count / steps.clamp_min(_TINY), coverage], dim=-1)
    return stats.flatten(1, 2)  # [B, t*h*w, 6], token order (t, h, w)


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
