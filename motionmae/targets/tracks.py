"""The TrackMAE target: how the points of each token move over its tubelet.

Input (made in the loader workers or the step, :class:`motionmae.config.TrackingConfig`):
``batch["tracks"]`` float32 ``[B, T, N, 2]`` ``(x, y)`` clip pixels of ``N = h * w`` points
seeded in clip frame 0, one per patch (``tracking.grid``: the patch centres, or CoTracker's
``grid_size = h`` grid; ``motion.query_grid`` order, row-major over ``(h, w)``) and followed
through the ``T`` clip frames (``tracking.frame_step = 2``: the tracker sees frames
``0, 2, 4, ...`` and the others are filled in, :mod:`motionmae.motion.frame_step`), and
``batch["track_visible"]`` bool ``[B, T, N]``.

Definition, per token ``(t, h, w)``:

1. **Window** (``cfg.windows``). Tubelet ``t`` covers clip frames ``t*u .. t*u + u - 1``
   (``u`` = tubelet size).

   * ``tubelet`` (default): its displacement is taken from frame ``s_t = min(t*u, T-1-u)`` to
     ``e_t = s_t + u`` (when ``T > u``; else ``0 .. T-1``): every tubelet but the last spans
     ``[t*u, (t+1)*u]``; the last one, whose end frame does not exist, takes the last ``u``
     frames of the clip ``[T-1-u, T-1]``, which still contain its own frames. Same length as
     all others (same scale), measured, not repeated.
   * ``official`` (TrackMAE's code): only the frames ``0, u, 2u, ...`` are read (the official
     code tracks ``[:, ::2]``; with ``tracking.frame_step = u`` the tracker sees exactly
     those frames), tubelet ``t`` spans ``[t*u, (t+1)*u]`` and the last one, with
     no frame after it, repeats the previous tubelet's displacement: ``s_t = min(t, t_n-2)*u``
     with ``t_n = T // u`` tubelets (``0 .. T-1`` when ``t_n = 1``, where the official code
     has no displacement at all).
2. **Upsampling** (``cfg.upsample_mode``). The ``h x w`` field of displacements is upsampled
   ``U`` x (``U = cfg.upsample``) by separable linear interpolation to ``hU x wU`` points;
   output row ``r = i*U + j`` belongs to patch row ``i`` (TrackMAE's ``(h h2)``). No extra
   tracking: CoTracker at ``(hU) x (wU)`` points costs ``U^2`` times more.

   * ``centres`` (default): point ``j`` of patch row ``i`` sits at its sub-patch centre,
     ``i + (j + 0.5) / U - 0.5`` in patch-centre units (the points
     ``motion.patch_grid_queries(S, S, patch, U)`` would track); the outermost sub-points, a
     quarter patch outside the outermost centres for ``U = 2``, are linearly *extrapolated*,
     so a linear motion field (translation, rotation, zoom) is reproduced exactly everywhere.
   * ``align_corners`` (TrackMAE's ``F.interpolate(..., mode="trilinear",
     align_corners=True)``, ``14 -> 28``): row ``r`` sits at ``r * (h-1) / (hU-1)``, the first
     and last rows on the outermost centres, so the points of border patches are up to half a
     patch away from their patch (and the mean of a token's points is not its centre's).
3. **Values.** ``U^2 * 2`` per token, ordered ``(sub-row, sub-column, (dx, dy))`` (TrackMAE's
   ``(h2 w2) c``), in clip pixels over the ``u``-frame window.
4. **Normalisation** (``cfg.norm``; ``d`` = the token's ``[U^2, 2]`` displacements):

   * ``none``: pixels. ``scale``: ``d / cfg.scale``.
   * ``patch`` (TrackMAE's): per token and per coordinate, z-score over the token's ``U^2``
     points with the unbiased variance ``var``; the divisor is set by ``cfg.patch_std``:
     ``std_plus_eps``, ``sqrt(var) + 1e-6`` (TrackMAE's code, ``.var(unbiased=True).sqrt()
     + 1e-6``), or ``sqrt_var_eps``, ``sqrt(var + 1e-6)``; ``auto`` (default) is TrackMAE's
     with ``windows=official``, else ``sqrt_var_eps``. The two agree where a token's points
     spread by more than 0.01 px; on near-static tokens (0.001 px of spread, which real
     trackers produce) they differ by up to 0.7. It keeps only the *local gradient* of the
     motion field: a token that translates rigidly gets exactly 0 whatever its speed or
     direction, and a static token's 0.01 px of tracker noise becomes a unit-variance
     target. Needs ``U >= 2``.
   * ``patch_mean``: ``patch``'s ``U^2 * 2`` values followed by the token's own mean
     displacement ``mean(d) / cfg.scale`` (2 channels): ``dim = U^2 * 2 + 2``; a rigid
     translation by ``v`` px gives ``(0, ..., 0, v / scale)``. Needs ``U >= 2``.
   * ``batch``: ``d / r`` with ``r = max(rms, cfg.rms_floor)``, ``rms`` the root mean square
     of every displacement value of the batch's (weighted: valid) tokens, detached. Unit RMS
     over the batch, speed differences between clips and tokens kept, invariant to the
     pixel scale of the whole batch; the floor keeps an all-static batch's noise small. Under
     DDP the batch is each process's own (no collective).

   A running (EMA) scale is not offered: targets hold no state, so it would need a buffer in
   the checkpoints and an all-reduce per step to stay the same on every rank and on resume.
5. **Weights** (``cfg.use_visibility``): a grid point's step is valid when the point is visible
   at both ``s_t`` and ``e_t``; a token weighs 1 when every grid point its sub-points are
   interpolated from (non-zero interpolation weight: the token's own point and, for ``U > 1``,
   its neighbours) is valid, else 0. All-or-nothing rather than the visible fraction because
   one bad point corrupts the patch statistics of every value of the token. With
   ``use_visibility=False`` (TrackMAE's behaviour) the weights are ``None``.
6. **Opt-in** ``horizons``, ``motion_weight``, ``relative``, ``queries``:
   :mod:`~.track_horizons`.

Everything is index/einsum arithmetic on device: no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from motionmae.config_loading import check
from motionmae.targets.pixel import NORM_EPS
from motionmae.targets.registry import TargetContext, TargetSpec, register_target
from motionmae.targets.track_horizons import (
    TrackHorizons,
    check_horizon_settings,
    frames_read,
    motion_weights,
    requeried_motion,
    scene_relative,
    tubelet_windows,
)
from motionmae.targets.track_points import TRACK_POINTS, tracked_point_motion
from motionmae.tokens import TokenGrid

# TrackMAE's loss weight of the tracks target next to a feature (teacher) target.
TRACKS_WEIGHT_WITH_FEATURES = 0.25
TRACK_NORMS = ("none", "scale", "patch", "patch_mean", "batch")
# The default of targets.tracks.norm; TrackMAE's own is "patch" (its recipes say so).
DEFAULT_TRACK_NORM = "batch"
TRACK_WINDOWS = ("tubelet", "official")
TRACK_UPSAMPLE_MODES = ("centres", "align_corners")
# Divisors of the patch norms: auto picks TrackMAE's std + eps with windows=official.
TRACK_PATCH_STDS = ("auto", "sqrt_var_eps", "std_plus_eps")


@dataclass
class TracksTargetConfig:
    """TrackMAE: per-tubelet displacements of grid points (one per patch, ``tracking.grid``,
    tracked through the clip), spatially upsampled ``upsample`` x (``upsample**2`` points per
    patch); :mod:`motionmae.targets.tracks` defines each setting.

    ``norm``: ``none`` (pixels), ``scale`` (divide by ``scale`` px), ``patch`` (z-score within
    each token, as TrackMAE; removes the token's own motion: a rigid translation gives 0),
    ``patch_mean`` (``patch`` plus the token's mean displacement / ``scale`` as 2 more
    channels), ``batch`` (divide by the batch's RMS displacement, at least ``rms_floor`` px).
    ``windows``: ``tubelet`` (each tubelet measured; the last one over the clip's last
    ``tubelet_size`` frames) or ``official`` (TrackMAE: frames ``0, u, 2u, ...``, the last
    tubelet repeats the previous one). ``upsample_mode``: ``centres`` (sub-patch centres) or
    ``align_corners`` (TrackMAE's ``align_corners=True``). ``patch_std``: the patch norms'
    divisor, ``sqrt_var_eps`` (``sqrt(var + 1e-6)``), ``std_plus_eps`` (TrackMAE's
    ``std + 1e-6``) or ``auto`` (TrackMAE's with ``windows: official``). Invisible points get
    loss weight 0 unless ``use_visibility`` is false (TrackMAE's original behaviour).
    ``weight`` null (default): TrackMAE's lambda, 0.25 next to a teacher target, else 1
    (:meth:`TargetsConfig.loss_weight`). ``horizons``, ``motion_weight``, ``relative``,
    ``queries`` (``first_frame``, TrackMAE's grid of frame 0, or ``every_tubelet``): opt-in,
    :mod:`motionmae.targets.track_horizons`. ``points``: ``interpolated`` (TrackMAE's
    upsampling of the patch centres' tracks) or ``tracked`` (the ``upsample^2`` sub-patch
    centres tracked themselves), :mod:`motionmae.targets.track_points`.
    """

    weight: float | None = None
    upsample: int = 2
    norm: str = DEFAULT_TRACK_NORM
    scale: float = 8.0
    rms_floor: float = 1.0
    windows: str = "tubelet"
    upsample_mode: str = "centres"
    patch_std: str = "auto"
    use_visibility: bool = True
    horizons: list[int] = field(default_factory=list)
    motion_weight: float = 0.0
    relative: bool = False
    queries: str = "first_frame"
    points: str = "interpolated"

    def validate(self, key: str) -> None:
        check(self.weight is None or self.weight >= 0, f"{key}.weight",
               f"must be >= 0 or null, got {self.weight}")
        check(self.upsample >= 1, f"{key}.upsample", "must be >= 1")
        check(self.norm in TRACK_NORMS, f"{key}.norm",
               f"must be one of {list(TRACK_NORMS)}, got {self.norm!r}")
        check(self.norm not in ("patch", "patch_mean") or self.upsample >= 2, f"{key}.norm",
               f"{self.norm} z-scores the upsample^2 points of a token and needs "
               f"{key}.upsample >= 2 (got {self.upsample})")
        check(self.scale > 0, f"{key}.scale", "must be > 0")
        check(self.rms_floor > 0, f"{key}.rms_floor", "must be > 0")
        check(self.windows in TRACK_WINDOWS, f"{key}.windows",
               f"must be one of {list(TRACK_WINDOWS)}, got {self.windows!r}")
        check(self.upsample_mode in TRACK_UPSAMPLE_MODES, f"{key}.upsample_mode",
               f"must be one of {list(TRACK_UPSAMPLE_MODES)}, got {self.upsample_mode!r}")
        check(self.patch_std in TRACK_PATCH_STDS, f"{key}.patch_std",
               f"must be one of {list(TRACK_PATCH_STDS)}, got {self.patch_std!r}")
        check_horizon_settings(self, key)
        check(self.points in TRACK_POINTS, f"{key}.points",
              f"must be one of {list(TRACK_POINTS)}, got {self.points!r}")
        check(self.points == "interpolated" or (
            self.upsample_mode == "centres" and not self.horizons
            and self.queries == "first_frame"), f"{key}.points",
              f"tracked points sit at the sub-patch centres of clip frame 0's grid: they need "
              f"{key}.upsample_mode: centres, no {key}.horizons and {key}.queries: "
              f"first_frame (got {self.upsample_mode!r}, {list(self.horizons)}, "
              f"{self.queries!r})")

    def resolved_patch_std(self) -> str:
        """``patch_std`` with ``auto`` resolved: ``std_plus_eps`` (TrackMAE's code) when
        ``windows`` is ``official``, else ``sqrt_var_eps``."""
        if self.patch_std != "auto":
            return self.patch_std
        return "std_plus_eps" if self.windows == "official" else "sqrt_var_eps"


__all__ = ["TracksTarget", "token_displacements", "upsample_matrix"]

# Norms that z-score each token's points and so need upsample >= 2.
_PATCH_NORMS = ("patch", "patch_mean")


def upsample_matrix(n: int, factor: int, align_corners: bool = False) -> torch.Tensor:
    """1-D linear interpolation from ``n`` patch centres to ``n * factor`` points.

    Output row ``r = i * factor + j`` samples, in units of the patch pitch (centres at
    integers), position ``i + (j + 0.5) / factor - 0.5`` (its sub-patch centre; beyond the
    first and last centre extrapolated linearly), or with ``align_corners`` position
    ``r * (n - 1) / (n * factor - 1)`` (``F.interpolate(align_corners=True)``: first and last
    rows on the outermost centres). With ``n == 1`` every row copies the one value.

    Returns:
        ``[n * factor, n]`` float64; rows sum to 1.
    """
    rows = n * factor
    out = torch.zeros(rows, n, dtype=torch.float64)
    if n == 1:
        return out.fill_(1.0)
    pos = torch.arange(rows, dtype=torch.float64)
    if align_corners:
        pos = pos * (n - 1) / max(rows - 1, 1)
    else:
        pos = torch.div(pos, factor, rounding_mode="floor") + ((pos % factor) + 0.5) / factor - 0.5
    left = pos.floor().clamp(0, n - 2).long()
    frac = pos - left
    index = torch.arange(rows)
    out[index, left] = 1.0 - frac
    out[index, left + 1] += frac
    return out


def _support(matrix: torch.Tensor, factor: int) -> torch.Tensor:
    """``[n * factor, n]`` interpolation matrix -> ``[n, n]`` float: 1 where patch ``i``'s
    sub-points depend on centre ``k``."""
    n = matrix.shape[1]
    return (matrix.abs().view(n, factor, n).sum(dim=1) > 0).to(matrix.dtype)


def token_displacements(
    tracks: torch.Tensor,
    grid: TokenGrid,
    windows: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Displacement of every grid point over each tubelet's window.

    Args:
        tracks: ``[B, T, h*w, 2]`` pixels (``T = grid.frames``).
        grid: the token grid.
        windows: ``(start [t], end [t])`` int64 on ``tracks``' device (default: the
            ``tubelet`` windows of :func:`tubelet_windows`; pass cached ones to avoid a
            host-to-device copy per call).

    Returns:
        ``[B, t, h, w, 2]`` pixels, ``tracks[:, e_t] - tracks[:, s_t]``.
    """
    if windows is None:
        windows = tuple(torch.tensor(w, device=tracks.device)
                        for w in tubelet_windows(grid.frames, grid.tubelet))
    start, end = windows
    delta = tracks.index_select(1, end) - tracks.index_select(1, start)
    return delta.view(tracks.shape[0], grid.t, grid.h, grid.w, 2)


class TracksTarget:
    """TrackMAE's target (see the module docstring): ``dim = upsample^2 * 2`` (``+ 2`` with
    ``norm=patch_mean``, ``* (1 + K)`` with ``K`` horizons).

    ``__call__(batch)`` reads ``tracks [B, T, h*w, 2]`` and, with ``use_visibility``,
    ``track_visible [B, T, h*w]``; returns ``(values [B, L, dim] float32, weight [B, L] float32
    or None)``.
    """

    name = "tracks"

    def __init__(self, cfg: TracksTargetConfig, grid: TokenGrid) -> None:
        factor = cfg.upsample
        if cfg.norm in _PATCH_NORMS and factor < 2:
            raise ValueError(f"targets.tracks.norm={cfg.norm} normalises over the upsample^2 "
                             "points of a token and needs targets.tracks.upsample >= 2 (got "
                             "1); use norm=scale, batch or none with upsample=1")
        self.grid = grid
        self.factor = factor
        self.points = factor * factor
        starts = tubelet_windows(grid.frames, grid.tubelet)[0]
        self.horizon = TrackHorizons(cfg, grid, starts) if cfg.horizons else None
        self.relative = cfg.relative
        self.requery = cfg.queries == "every_tubelet"
        self.tracked_points = cfg.points == "tracked"
        # the tubelet's own window, the scene-relative one, then each horizon
        channels = 1 + int(cfg.relative) + len(cfg.horizons)
        self.dim = self.points * 2 * channels + (2 if cfg.norm == "patch_mean" else 0)
        self.motion_weight = float(cfg.motion_weight)
        self.weight = cfg.weight
        self.norm = cfg.norm
        self.scale = float(cfg.scale)
        self.rms_floor = float(cfg.rms_floor)
        self.windows = cfg.windows
        self.align_corners = cfg.upsample_mode == "align_corners"
        self.std_plus_eps = cfg.resolved_patch_std() == "std_plus_eps"
        self.use_visibility = cfg.use_visibility
        self._matrices: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        self._windows: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _interp(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(A_h [hU, h], A_w [wU, w], S_h [h, h], S_w [w, w])`` on ``like``'s device and dtype,
        made once per device (a host-to-device copy waits for the device)."""
        key = (like.device, like.dtype)
        if key not in self._matrices:
            ah = upsample_matrix(self.grid.h, self.factor, self.align_corners)
            aw = upsample_matrix(self.grid.w, self.factor, self.align_corners)
            mats = (ah, aw, _support(ah, self.factor), _support(aw, self.factor))
            self._matrices[key] = tuple(m.to(device=like.device, dtype=like.dtype) for m in mats)
        return self._matrices[key]

    def _window_index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`tubelet_windows` as ``(start [t], end [t])`` int64 on ``device``, made once."""
        if device not in self._windows:
            starts, ends = tubelet_windows(self.grid.frames, self.grid.tubelet, self.windows)
            self._windows[device] = (torch.tensor(starts, device=device),
                                     torch.tensor(ends, device=device))
        return self._windows[device]

    def _check(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "tracks" not in batch:
            raise KeyError("the tracks target needs batch['tracks'] [B, T, h*w, 2] (point tracks "
                           "of the patch centres, made by the loader when targets.names "
                           "includes 'tracks')")
        tracks = batch["tracks"]
        expected = (self.grid.frames, self.grid.spatial, 2)
        if tracks.ndim != 4 or tuple(tracks.shape[1:]) != expected:
            raise ValueError(f"batch['tracks']: expected [B, {expected[0]}, {expected[1]}, 2] "
                             f"(clip frames, patch centres h*w, xy), got {tuple(tracks.shape)}")
        return tracks

    def token_weights(self, visible: torch.Tensor) -> torch.Tensor:
        """``track_visible [B, T, h*w]`` bool -> ``[B, L]`` float32 0/1 (module doc, item 5)."""
        g = self.grid
        expected = (g.frames, g.spatial)
        if visible.ndim != 3 or tuple(visible.shape[1:]) != expected:
            raise ValueError(f"batch['track_visible']: expected [B, {g.frames}, {g.spatial}], "
                             f"got {tuple(visible.shape)}")
        start, end = self._window_index(visible.device)
        valid = visible.index_select(1, start) & visible.index_select(1, end)  # [B, t, h*w]
        if self.horizon is not None:
            valid = valid & self.horizon.valid(visible)
        return self.window_weights(valid)

    def window_weights(self, valid: torch.Tensor) -> torch.Tensor:
        """``[B, t, h*w]`` bool, each grid point valid over its window -> ``[B, L]`` float32
        0/1 (module doc, item 5)."""
        g = self.grid
        invalid = (~valid).to(torch.float32).view(-1, g.t, g.h, g.w)
        _, _, sh, sw = self._interp(invalid)
        bad = torch.einsum("ik,jl,btkl->btij", sh, sw, invalid)
        return (bad == 0).to(torch.float32).reshape(-1, g.num_tokens)

    def pixels(self, tracks: torch.Tensor) -> torch.Tensor:
        """``tracks [B, T, h*w, 2]`` -> each token's upsampled displacements ``[B, L, U^2, 2]``
        float32, pixels (module doc, items 1-3)."""
        delta = token_displacements(tracks.float(), self.grid, self._window_index(tracks.device))
        return self._upsample(delta)

    def _upsample(self, delta: torch.Tensor) -> torch.Tensor:
        """``[B', t, h, w, 2]`` displacements -> ``[B', L, U^2, 2]`` (module doc, item 2)."""
        g, u = self.grid, self.factor
        ah, aw, _, _ = self._interp(delta)
        up = torch.einsum("Hh,Ww,bthwc->btHWc", ah, aw, delta)  # [B, t, hU, wU, 2]
        tokens = up.reshape(-1, g.t, g.h, u, g.w, u, 2).permute(0, 1, 2, 4, 3, 5, 6)
        return tokens.reshape(-1, g.num_tokens, self.points, 2)

    def batch_rms(self, tokens: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``norm=batch``'s divisor: ``tokens [B, L, U^2, 2]`` pixels (and token weights
        ``[B, L]``) -> 0-d tensor ``max(RMS over the weighted tokens' values, rms_floor)``,
        detached, on the device (no host synchronisation)."""
        square = tokens.detach().square().mean(dim=(2, 3))  # [B, L]
        if weight is None:
            mean_square = square.mean()
        else:
            mean_square = (square * weight).sum() / weight.sum().clamp(min=1.0)
        return mean_square.clamp(min=self.rms_floor ** 2).sqrt()

    def values(self, tracks: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``tracks [B, T, h*w, 2]`` -> normalised per-token targets ``[B, L, dim]`` float32.

        ``weight [B, L]`` (the token weights) only matters for ``norm=batch``: tokens of weight
        0 do not count in the batch's RMS."""
        return self.normalised(self.pixels(tracks), weight, tracks)

    def normalised(self, tokens: torch.Tensor, weight: torch.Tensor | None = None,
                   tracks: torch.Tensor | None = None) -> torch.Tensor:
        """Each token's displacements ``[B, L, U^2, 2]`` pixels -> its values ``[B, L, dim]``
        (module doc, item 4); ``tracks`` feeds the horizons (which need them)."""
        g = self.grid
        if self.norm in _PATCH_NORMS:  # (relative and horizons refuse these norms)
            var, mean = torch.var_mean(tokens, dim=2, correction=1, keepdim=True)
            std = var.sqrt() + NORM_EPS if self.std_plus_eps else (var + NORM_EPS).sqrt()
            shape = ((tokens - mean) / std).flatten(2)
            if self.norm == "patch":
                return shape
            return torch.cat([shape, mean.flatten(2) / self.scale], dim=2)
        # The tubelet's own channels, then the scene-relative ones, each normalised alone.
        channels = [tokens, scene_relative(tokens, g)] if self.relative else [tokens]
        if self.norm == "scale":
            channels = [part / self.scale for part in channels]
        elif self.norm == "batch":
            channels = [part / self.batch_rms(part, weight) for part in channels]
        values = [part.reshape(-1, g.num_tokens, self.points * 2) for part in channels]
        if self.horizon is not None:
            assert tracks is not None, "the horizon channels read the tracks"
            values.append(self.horizon.values(tracks, self._upsample, weight))
        return values[0] if len(values) == 1 else torch.cat(values, dim=2)

    def __call__(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``batch["tracks"]`` (and ``batch["track_visible"]``) -> ``(values [B, L, dim],
        weight [B, L] | None)``; ``queries: every_tubelet`` reads ``batch["tubelet_motion"]``
        and ``batch["tubelet_motion_visible"]`` instead, ``points: tracked``
        ``batch["subpatch_tracks"]`` and ``batch["subpatch_visible"]``."""
        if self.requery:
            delta, valid = requeried_motion(batch, self.grid)
            tokens = self._upsample(delta)
            weight = self.window_weights(valid) if self.use_visibility else None
            values = self.normalised(tokens, weight)
        elif self.tracked_points:
            tokens, valid = tracked_point_motion(batch, self.grid, self.points,
                                                 self._window_index)
            weight = valid.to(torch.float32) if self.use_visibility else None
            values = self.normalised(tokens, weight)
        else:
            tracks = self._check(batch)
            weight = None
            if self.use_visibility:
                if "track_visible" not in batch:
                    raise KeyError("targets.tracks.use_visibility needs batch['track_visible'] "
                                   "[B, T, h*w] bool; set use_visibility=false to train "
                                   "without it")
                weight = self.token_weights(batch["track_visible"])
            tokens = self.pixels(tracks)
            values = self.normalised(tokens, weight, tracks)
        if self.motion_weight > 0:
            weight = motion_weights(tokens, weight, self.motion_weight)
        return values, weight

    def __repr__(self) -> str:
        return (f"TracksTarget(dim={self.dim}, upsample={self.factor}, norm={self.norm!r}, "
                f"std_plus_eps={self.std_plus_eps}, windows={self.windows!r}, "
                f"align_corners={self.align_corners}, visibility={self.use_visibility})")


def tracks_default_weight(run_targets: Sequence[TargetSpec]) -> float:
    """TrackMAE's lambda: 0.25 next to a target that predicts a frozen model's features (a
    teacher), else 1."""
    return (TRACKS_WEIGHT_WITH_FEATURES if any(spec.predicts_features for spec in run_targets)
            else 1.0)


def check_tracks_run(cfg: TracksTargetConfig, run: Any) -> None:
    """The target's rule across sections: with ``tracking.frame_step > 1`` the tracker sees
    every ``frame_step``-th clip frame only, so the target must read no other."""
    TrackHorizons.check_run(cfg.horizons, run.data.frames, run.model.resolved().tubelet_size)
    if cfg.queries == "every_tubelet":
        check(run.tracking.frame_step == 1 and run.tracking.where != "step",
              "targets.tracks.queries", "every_tubelet tracks each tubelet's window in the "
              "loader workers at every frame: it needs tracking.frame_step: 1 and "
              f"tracking.where: workers or auto (got {run.tracking.frame_step}, "
              f"{run.tracking.where})")
    check(cfg.points == "interpolated" or run.tracking.where != "step", "targets.tracks.points",
          "tracked sub-patch points are tracked in the loader workers: they need "
          "tracking.where: workers or auto (got step)")
    step = run.tracking.frame_step  # horizons need windows=tubelet, which this refuses
    if step == 1:
        return
    read = frames_read(run.data.frames, run.model.resolved().tubelet_size, cfg.windows)
    unseen = [f for f in read if f % step]
    check(not unseen, "tracking.frame_step",
          f"the tracker sees clip frames 0, {step}, {2 * step}, ... only, but "
          f"targets.tracks.windows={cfg.windows} reads frames {unseen} too; use windows: "
          "official with model.tubelet_size a multiple of tracking.frame_step (and "
          "data.frames > model.tubelet_size)")


@register_target("tracks", TracksTargetConfig, needs_tracks=True, cacheable=True,
                 check=check_tracks_run, default_weight=tracks_default_weight)
def build_tracks_target(cfg: TracksTargetConfig, ctx: TargetContext) -> TracksTarget:
    return TracksTarget(cfg, ctx.grid)
