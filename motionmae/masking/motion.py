"""TrackMAE's motion-aware masking: keep a chosen share of visible tubes where things move.

Procedure, per clip (``N = h * w`` spatial positions, one tracked point per patch centre):

1. **Motion per position**: the mean frame-to-frame displacement magnitude of the position's
   track, over the steps where the point is visible at both ends (0 if it never is).
2. **Bins**: rank the positions by motion (ties broken uniformly at random); the ``ceil(N / 2)``
   highest form the high-motion bin, the rest the low-motion bin.
3. **Sample**: ``V = grid.num_visible_spatial(ratio)`` visible positions (the tube-masking
   count), ``V_high = round(rho * V)`` drawn uniformly without replacement from the high bin
   and ``V - V_high`` from the low bin; when a bin is too small the remainder comes from the
   other (so exactly ``V`` distinct positions are always visible).
4. **Tube**: the same spatial mask in every tubelet slice.

Differences from TrackMAE's ``create_mask_cotracker_motion_bins``: ``round`` instead of
``int`` for ``V_high`` and the tube count ``grid.num_visible_spatial`` (``round``) instead of
``N - int(ratio * N)``; TrackMAE tops up a too-small bin by sampling it again *with
replacement* (duplicates, so fewer than ``V`` visible tokens), here the other bin fills in;
invisible steps are left out of the motion (TrackMAE has no visibility); ties in the ranking
are broken at random instead of by index (a static clip would otherwise always favour the top
rows); motion comes from all ``T`` clip frames rather than every ``tubelet``-th (the ranking
is what matters). All index arithmetic (argsort, gather, scatter): no host synchronisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from motionmae.config_loading import check
from motionmae.masking.registry import register_masking
from motionmae.tokens import TokenGrid, uniform_noise

__all__ = ["MotionAwareMask", "motion_aware_mask", "motion_per_position"]


@dataclass
class MotionMaskingConfig:
    """``masking.motion``: TrackMAE's motion-aware masking takes a share ``rho`` of the
    visible positions from the high-motion half (``rho: 0.5``, the paper's)."""

    rho: float = 0.5

    def validate(self, key: str) -> None:
        check(0.0 <= self.rho <= 1.0, f"{key}.rho", f"must be in [0, 1], got {self.rho}")


def motion_per_position(tracks: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
    """Mean frame-to-frame displacement magnitude of each track.

    Args:
        tracks: ``[B, T, N, 2]`` ``(x, y)`` pixels.
        visible: ``[B, T, N]`` bool, or ``None`` (all visible).

    Returns:
        ``[B, N]`` float32 pixels per frame, averaged over the steps visible at both ends (0
        where there is none, and for ``T == 1``).
    """
    tracks = tracks.float()
    step = torch.linalg.vector_norm(tracks[:, 1:] - tracks[:, :-1], dim=-1)  # [B, T-1, N]
    if visible is None:
        return step.mean(dim=1) if step.shape[1] else step.sum(dim=1)
    valid = (visible[:, 1:] & visible[:, :-1]).to(step.dtype)
    return (step * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)


def _bin_counts(n: int, num_visible: int, rho: float) -> tuple[int, int]:
    """``(high bin size, visible positions taken from it)``, both Python ints."""
    high = math.ceil(n / 2)
    take = min(max(round(rho * num_visible), num_visible - (n - high)), high)
    return high, take


def motion_aware_mask(
    tracks: torch.Tensor,
    visible: torch.Tensor | None,
    grid: TokenGrid,
    ratio: float,
    rho: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """TrackMAE's motion-aware tube mask (see the module docstring).

    Args:
        tracks: ``[B, T, N, 2]`` pixels, ``N = grid.spatial`` points at the patch centres in
            row-major ``(h, w)`` order.
        visible: ``[B, T, N]`` bool or ``None``.
        grid: the token grid.
        ratio: hidden fraction in (0, 1).
        rho: share of the visible positions drawn from the high-motion half, in [0, 1].
        generator: source of randomness (noise drawn on its device, then moved).

    Returns:
        ``[B, L]`` bool on ``tracks``' device, True = hidden, ``grid.num_visible(ratio)`` False
        per row, the same spatial pattern in every tubelet slice.
    """
    n = grid.spatial
    if tracks.ndim != 4 or tracks.shape[2] != n or tracks.shape[3] != 2:
        raise ValueError(f"tracks: expected [B, T, {n}, 2] (one point per patch, h*w = "
                         f"{grid.h}*{grid.w}), got {tuple(tracks.shape)}")
    b = tracks.shape[0]
    num_visible = grid.num_visible_spatial(ratio)
    high, take = _bin_counts(n, num_visible, rho)
    motion = motion_per_position(tracks, visible)  # [B, N]
    noise = uniform_noise((b, 2 * n), generator, tracks.device)
    # rank by motion, ties at random: shuffle, then a stable descending sort
    shuffle = torch.argsort(noise[:, :n], dim=1)
    ranked = torch.argsort(torch.gather(motion, 1, shuffle), dim=1, descending=True, stable=True)
    order = torch.gather(shuffle, 1, ranked)  # positions, most moving first
    # inside each bin, a uniformly random subset: sort the bin's noise
    pick = noise[:, n:]
    high_pick = torch.argsort(pick[:, :high], dim=1)[:, :take]
    low_pick = high + torch.argsort(pick[:, high:], dim=1)[:, : num_visible - take]
    keep = torch.gather(order, 1, torch.cat([high_pick, low_pick], dim=1))  # [B, V]
    spatial = torch.ones(b, n, dtype=torch.bool, device=tracks.device).scatter(1, keep, False)
    return spatial.unsqueeze(1).expand(-1, grid.t, -1).reshape(b, grid.num_tokens)


class MotionAwareMask:
    """Mask generator for ``masking.kind = motion`` (:func:`motion_aware_mask`).

    Reads ``batch["tracks"] [B, T, h*w, 2]`` and, if present, ``batch["track_visible"] [B, T,
    h*w]``; returns ``[B, L]`` bool on the tracks' device with ``num_visible`` visible tokens.
    """

    def __init__(self, cfg: MotionMaskingConfig, grid: TokenGrid, ratio: float) -> None:
        self.grid = grid
        self.ratio = ratio
        self.rho = cfg.rho
        self.num_visible = grid.num_visible(ratio)
        self.num_masked = grid.num_tokens - self.num_visible

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if "tracks" not in batch:
            raise KeyError("masking.kind=motion needs point tracks: batch['tracks'] [B, T, h*w, "
                           "2] of the patch centres (the loader adds them when the config's "
                           "masking kind needs tracks)")
        return motion_aware_mask(batch["tracks"], batch.get("track_visible"), self.grid,
                                 self.ratio, self.rho, generator)

    def __repr__(self) -> str:
        return (f"MotionAwareMask(ratio={self.ratio}, rho={self.rho}, "
                f"visible={self.num_visible})")


register_masking("motion", MotionMaskingConfig, needs_tracks=True)(MotionAwareMask)
