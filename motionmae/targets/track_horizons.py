"""The tracks target's tubelet windows (which frames each token's displacement spans), and its
four opt-in variants (issue 21): longer horizons, motion-weighted tokens, motion relative to
the scene, points re-seeded at every tubelet.

All are off by default (``targets.tracks.horizons: []``, ``targets.tracks.motion_weight: 0``,
``targets.tracks.relative: false``, ``targets.tracks.queries: first_frame``), and then
:class:`~motionmae.targets.tracks.TracksTarget` computes exactly what it computed before they
existed (the same operations, bit for bit).

**Horizons** (``horizons: [k, ...]``, each ``k >= 2`` tubelets). Tubelet ``t``'s window starts
at ``s_t`` (the ``tubelet`` windows of :func:`tubelet_windows`); horizon ``k`` is the
displacement of the same grid points from ``s_t`` to
``e_{t,k} = min(s_t + k*u, T-1)`` (``u`` = tubelet size, ``T`` clip frames), upsampled like
the tubelet's own displacement and appended to the token's values: ``dim = U^2 * 2 * (1 + K)``
for ``K`` horizons, ordered ``(horizon, sub-row, sub-column, (dx, dy))`` after the tubelet's
``U^2 * 2``. Where ``s_t + k*u`` runs past the clip the window is **clamped** to the clip's
last frame, not zeroed with loss weight 0: the loss has one weight per token
(:func:`~motionmae.tokens.masked_mse`, the trivial baseline and the learned sampler's
reward all read ``[B, L]``), so a zeroed channel would be a target saying "static"; a clamped
one is a real, measured displacement over a shorter window whose length the decoder knows
from the token's position (``T-1-s_t`` frames, the same for every clip).
Normalisation as the tubelet channels': ``none`` pixels, ``scale`` divided by ``scale``,
``batch`` divided by the batch RMS of *that horizon's own* displacements (at least
``rms_floor``), so a long horizon does not dominate the loss. The patch norms are refused:
they z-score a token's points and so remove its own motion, which is what a horizon carries.
Visibility: a token weighs 1 only if the points it reads are visible at both ends of its
tubelet window *and* of every horizon window (all-or-nothing, as the tubelet's own rule).

**Motion weight** (``motion_weight: w >= 0``). Each token's loss weight (its visibility
weight, or 1) is multiplied by ``1 + w * m / mean(m)``, ``m`` the token's mean displacement
magnitude over its ``U^2`` points over its tubelet window, in pixels, and ``mean(m)`` its
weighted mean over the batch's tokens: a static token keeps weight 1, a token moving at the
batch's mean speed weighs ``1 + w``. The weights are detached and computed on the device (no
host synchronisation); the loss stays a weighted mean (``sum(w e) / sum(w)``), so its scale
is comparable with ``w = 0``.

**Relative motion** (``relative: true``). Each token also predicts its points' displacement
minus the median displacement of all the clip's points over the same tubelet window: the
scene's (the camera's) translation removed, as M3Video removes camera motion before its
trajectories, but kept beside the token's own motion rather than instead of it. Appended
after the tubelet's ``U^2 * 2`` values (before any horizon), normalised like them; ``batch``
divides it by its own batch RMS. Refused with the patch norms (which already remove every
token's own mean motion).

**Points re-seeded at every tubelet** (``queries: every_tubelet``). TrackMAE seeds its grid in
clip frame 0 and reads tubelet ``t``'s target from the points that *started* in the token's
patch, which by frame ``s_t`` may be patches away: the target of token ``(t, i, j)`` is the
motion of content the token may not hold. Here the grid is seeded again at each window's
first frame ``s_t`` and tracked over its window only (the loader's
:class:`~motionmae.motion.hooks.TracksHook` with ``windows``, ``batch["tubelet_motion"]
[B, t, h*w, 2]`` and ``batch["tubelet_motion_visible"] [B, t, h*w]``), so a token's target is
the motion of what is at its own place in its own tubelet. The windows, upsampling,
normalisation and the visibility rule are the default's; ``windows: official``, horizons
(which read frame-0 points beyond the window), ``tracking.frame_step > 1`` and
``tracking.where: step`` are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from motionmae.config_loading import check
from motionmae.tokens import TokenGrid

# The norms the horizon channels support (the patch norms remove a token's own motion).
HORIZON_NORMS = ("none", "scale", "batch")
# Below this mean displacement (px) a batch counts as static: every token keeps weight 1.
MOTION_MEAN_EPS = 1e-6

__all__ = [
    "HORIZON_NORMS",
    "HorizonSettings",
    "TrackHorizons",
    "check_horizon_settings",
    "frames_read",
    "horizon_windows",
    "motion_weights",
    "requeried_motion",
    "scene_relative",
    "tubelet_windows",
]

# Where each token's points start: TrackMAE's grid of clip frame 0, or a grid seeded again at
# every tubelet window's first frame.
TRACK_QUERIES = ("first_frame", "every_tubelet")


class HorizonSettings(Protocol):
    """What this module reads of the tracks target's section (``TracksTargetConfig``)."""

    horizons: list[int]
    motion_weight: float
    relative: bool
    queries: str
    norm: str
    windows: str
    scale: float
    rms_floor: float


def check_horizon_settings(cfg: HorizonSettings, key: str = "targets.tracks") -> None:
    """The section's own rules for ``horizons`` and ``motion_weight`` (``key``: the section);
    raises :class:`~motionmae.config_loading.ConfigError` naming the key."""
    horizons, norm, windows = cfg.horizons, cfg.norm, cfg.windows
    check(math.isfinite(cfg.motion_weight) and cfg.motion_weight >= 0, f"{key}.motion_weight",
          f"must be a finite number >= 0, got {cfg.motion_weight}")
    check(not cfg.relative or norm in HORIZON_NORMS, f"{key}.relative",
          f"needs {key}.norm in {list(HORIZON_NORMS)}, got {norm!r} (the patch norms already "
          "remove each token's own mean motion)")
    check(cfg.queries in TRACK_QUERIES, f"{key}.queries",
          f"must be one of {list(TRACK_QUERIES)}, got {cfg.queries!r}")
    if cfg.queries == "every_tubelet":
        check(windows == "tubelet" and not horizons, f"{key}.queries",
              f"every_tubelet needs {key}.windows: tubelet and no {key}.horizons (got "
              f"windows {windows!r}, horizons {list(horizons)}): each re-seeded grid is "
              "tracked over its own tubelet window only")
    if not horizons:
        return
    check(all(k >= 2 for k in horizons), f"{key}.horizons",
          f"each horizon is a number of tubelets >= 2 (1 is the tubelet's own window), "
          f"got {list(horizons)}")
    check(len(set(horizons)) == len(horizons), f"{key}.horizons",
          f"has duplicates: {list(horizons)}")
    check(windows == "tubelet", f"{key}.horizons",
          f"needs {key}.windows: tubelet, got {windows!r} (official windows read only the "
          "frames 0, u, 2u, ... and repeat the last tubelet; a horizon clamped to the clip's "
          "last frame reads another)")
    check(norm in HORIZON_NORMS, f"{key}.horizons",
          f"needs {key}.norm in {list(HORIZON_NORMS)}, got {norm!r} (the patch norms remove "
          "each token's own motion, which is what a horizon channel carries)")


def tubelet_windows(frames: int, tubelet: int,
                    mode: str = "tubelet") -> tuple[list[int], list[int]]:
    """Start and end clip frame of each tubelet's displacement window
    (:mod:`~motionmae.targets.tracks`, item 1).

    Args:
        frames: clip frames ``T`` (a multiple of ``tubelet``).
        tubelet: frames per tubelet ``u``.
        mode: ``tubelet`` or ``official``.

    Returns:
        ``(starts, ends)``, ``t_n = T // u`` ints each, ``(0, T-1)`` when ``T <= u``; else
        ``tubelet``: ``s_t = min(t*u, T-1-u)``; ``official``: ``s_t = min(t, t_n-2) * u``;
        ``e_t = s_t + u``.
    """
    if mode not in ("tubelet", "official"):
        raise ValueError(f"mode must be 'tubelet' or 'official', got {mode!r}")
    count = frames // tubelet
    if frames <= tubelet:
        return [0] * count, [frames - 1] * count
    if mode == "official":
        starts = [min(t, count - 2) * tubelet for t in range(count)]
    else:
        starts = [min(t * tubelet, frames - 1 - tubelet) for t in range(count)]
    return starts, [s + tubelet for s in starts]


def frames_read(frames: int, tubelet: int, mode: str = "tubelet") -> list[int]:
    """The clip frames whose tracks the target reads: every window's start and end
    (:func:`tubelet_windows`), sorted."""
    starts, ends = tubelet_windows(frames, tubelet, mode)
    return sorted(set(starts) | set(ends))


def horizon_windows(starts: Sequence[int], frames: int, tubelet: int,
                    horizons: Sequence[int]) -> tuple[list[int], list[int]]:
    """Start and end clip frame of every horizon window, horizon-major.

    Args:
        starts: the ``t`` tubelet windows' start frames ``s_t``.
        frames: clip frames ``T``.
        tubelet: frames per tubelet ``u``.
        horizons: ``K`` horizons, in tubelets.

    Returns:
        ``(start, end)``, ``K * t`` ints each: entry ``i * t + j`` is horizon ``horizons[i]``
        of tubelet ``j``, ``(s_j, min(s_j + k*u, T-1))``.
    """
    start = [s for _ in horizons for s in starts]
    end = [min(s + k * tubelet, frames - 1) for k in horizons for s in starts]
    return start, end


class TrackHorizons:
    """The horizon channels of a tracks target on ``grid`` (module docstring): ``cfg``'s
    ``horizons``, normalised by its ``norm`` (``scale``, ``rms_floor``).

    ``starts``: the tubelet windows' start frames (``t`` ints).
    """

    def __init__(self, cfg: HorizonSettings, grid: TokenGrid, starts: Sequence[int]) -> None:
        check_horizon_settings(cfg)  # also when built without a validated config
        self.horizons = tuple(cfg.horizons)
        self.norm = cfg.norm
        self.scale = float(cfg.scale)
        self.rms_floor = float(cfg.rms_floor)
        self.grid = grid
        self.windows = horizon_windows(starts, grid.frames, grid.tubelet, self.horizons)
        self._index: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def check_run(horizons: Sequence[int], frames: int, tubelet: int,
                  key: str = "targets.tracks") -> None:
        """Rule across sections: horizon ``k`` spans ``k * tubelet`` frames, which must be
        shorter than the clip (``data.frames``), else every token's window ends at its last
        frame."""
        long = [k for k in horizons if k * tubelet >= frames]
        check(not long, f"{key}.horizons",
              f"horizons {long} span k * model.tubelet_size = {[k * tubelet for k in long]} "
              f"frames, not less than the clip's data.frames = {frames}")

    @property
    def count(self) -> int:
        return len(self.horizons)

    def index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`horizon_windows` as ``(start [K*t], end [K*t])`` int64 on ``device``, made
        once per device (a host-to-device copy waits for the device)."""
        if device not in self._index:
            self._index[device] = tuple(torch.tensor(w, device=device) for w in self.windows)
        return self._index[device]

    def valid(self, visible: torch.Tensor) -> torch.Tensor:
        """``track_visible [B, T, h*w]`` bool -> ``[B, t, h*w]`` bool: each grid point visible
        at both ends of every horizon window of its tubelet."""
        start, end = self.index(visible.device)
        both = visible.index_select(1, start) & visible.index_select(1, end)  # [B, K*t, h*w]
        return both.view(visible.shape[0], self.count, self.grid.t, -1).all(dim=1)

    def displacements(self, tracks: torch.Tensor) -> torch.Tensor:
        """``tracks [B, T, h*w, 2]`` pixels -> ``[B*K, t, h, w, 2]`` pixels, batch-major: the
        grid points' displacement over every horizon window."""
        g = self.grid
        start, end = self.index(tracks.device)
        delta = tracks.index_select(1, end) - tracks.index_select(1, start)  # [B, K*t, hw, 2]
        return delta.view(-1, g.t, g.h, g.w, 2)

    def values(self, tracks: torch.Tensor,
               upsample: Callable[[torch.Tensor], torch.Tensor],
               weight: torch.Tensor | None = None) -> torch.Tensor:
        """The horizon channels of every token.

        Args:
            tracks: ``[B, T, h*w, 2]`` pixels.
            upsample: the target's ``[B', t, h, w, 2] -> [B', L, U^2, 2]`` upsampling.
            weight: ``[B, L]`` token weights: with ``norm=batch`` only tokens of weight > 0
                count in each horizon's RMS (all when None).

        Returns:
            ``[B, L, K * U^2 * 2]`` float32, ordered ``(horizon, sub-point, (dx, dy))``:
            pixels (``none``), divided by ``scale``, or each horizon divided by the RMS of its
            own values (at least ``rms_floor``; detached, on the device).
        """
        b, length = tracks.shape[0], self.grid.num_tokens
        tokens = upsample(self.displacements(tracks.float()))  # [B*K, L, U^2, 2]
        tokens = tokens.view(b, self.count, length, -1, 2)
        if self.norm == "scale":
            tokens = tokens / self.scale
        elif self.norm == "batch":
            square = tokens.detach().square().mean(dim=(3, 4))  # [B, K, L]
            if weight is None:
                mean_square = square.mean(dim=(0, 2))
            else:
                mean_square = ((square * weight[:, None]).sum(dim=(0, 2))
                               / weight.sum().clamp(min=1.0))
            rms = mean_square.clamp(min=self.rms_floor ** 2).sqrt()  # [K]
            tokens = tokens / rms.view(1, -1, 1, 1, 1)
        return tokens.transpose(1, 2).reshape(b, length, -1)


def motion_weights(pixels: torch.Tensor, weight: torch.Tensor | None,
                   motion_weight: float) -> torch.Tensor:
    """Per-token loss weights that favour moving tokens (module docstring).

    Args:
        pixels: ``[B, L, U^2, 2]`` each token's displacements over its tubelet window, pixels.
        weight: ``[B, L]`` visibility weights (0/1), or None (all 1).
        motion_weight: ``w >= 0``.

    Returns:
        ``[B, L]`` float32, detached: ``weight * (1 + w * m / mean(m))`` with ``m [B, L]`` the
        mean displacement magnitude over a token's points and ``mean(m)`` its ``weight``-ed
        mean over the batch (at least :data:`MOTION_MEAN_EPS` px).
    """
    m = torch.linalg.vector_norm(pixels.detach().float(), dim=-1).mean(dim=-1)  # [B, L]
    if weight is None:
        mean = m.mean()
    else:
        weight = weight.detach().to(m.dtype)
        mean = (m * weight).sum() / weight.sum().clamp(min=1.0)
    factor = 1.0 + motion_weight * m / mean.clamp(min=MOTION_MEAN_EPS)
    return factor if weight is None else weight * factor


def scene_relative(pixels: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """``pixels [B, L, U^2, 2]`` (each token's displacements, tokens in ``(t, h, w)`` order) ->
    the same minus, per clip and tubelet window ``t``, the median over its ``h*w*U^2`` points
    of each coordinate: the scene's translation removed."""
    per_window = pixels.reshape(pixels.shape[0], grid.t, -1, 2)
    median = per_window.median(dim=2, keepdim=True).values
    return (per_window - median).reshape(pixels.shape)


def requeried_motion(batch: dict[str, torch.Tensor],
                     grid: TokenGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """``queries: every_tubelet``'s displacements (module docstring) from the batch.

    Returns:
        ``(delta [B, t, h, w, 2] float32 pixels, valid [B, t, h*w] bool)``.
    """
    if "tubelet_motion" not in batch or "tubelet_motion_visible" not in batch:
        raise KeyError("targets.tracks.queries=every_tubelet needs batch['tubelet_motion'] "
                       "[B, t, h*w, 2] and batch['tubelet_motion_visible'] [B, t, h*w], made "
                       "by the loader's tracks hook (tracking.where: workers)")
    motion, valid = batch["tubelet_motion"], batch["tubelet_motion_visible"]
    expected = (grid.t, grid.spatial)
    if motion.ndim != 4 or tuple(motion.shape[1:]) != (*expected, 2) \
            or tuple(valid.shape) != tuple(motion.shape[:3]):
        raise ValueError(f"batch['tubelet_motion']: expected [B, {grid.t}, {grid.spatial}, 2] "
                         f"with visibility [B, {grid.t}, {grid.spatial}], got "
                         f"{tuple(motion.shape)} and {tuple(valid.shape)}")
    return motion.float().view(-1, grid.t, grid.h, grid.w, 2), valid.bool()
