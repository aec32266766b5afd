"""The M3Video (masked motion encoding) trajectory target, computed in the loader workers.

For every tubelet the points of a regular sub-grid of each patch are followed through dense
optical flow at the **full frame rate** (the source frames between the clip's frames, which the
model never sees: the targets are temporally denser than the input), and each token predicts
the shape of its trajectories and the appearance along them.

Definition, for a clip of ``T`` frames with source offsets ``frame_indices`` (relative:
``frame_indices[0] == 0``) into ``F`` dense frames, ``K = points_per_side^2`` and ``L =
length`` steps (``L + 1`` positions; M3Video's ``T = (p_t, ..., p_{t+L})``, L = 6):

1. **Window.** Tubelet ``t`` starts at dense frame ``d_t = frame_indices[t * tubelet]`` and its
   trajectories cover the ``L + 1`` dense frames ``a_t .. a_t + L`` with ``a_t = min(d_t, F -
   L - 1)``: where the window would run past the last dense frame it is shifted back to end
   there (it still covers the tubelet's own frames, and every step is measured, not held). If
   ``F < L + 1`` the window is cut at ``F`` and held (zero steps, repeated appearance) and the
   tubelet's tokens get weight 0. A data side that decodes ``L`` frames past the clip's last
   frame gets unshifted windows for free.
2. **Points.** ``motion.patch_grid_queries(S, S, patch, points_per_side)`` in dense frame
   ``a_t`` (sub-patch centres, token order), chained forwards through DIS flow (``fast``
   preset, 3 x 3 median filter, forward-backward check at 1 px: ``motion.chain_dense_grid``).
   Flow is computed once per needed frame pair and shared by all tubelets. With
   ``camera_compensation`` the flow is the residual after a per-pair homography and the
   positions are in the window's first frame with camera motion removed (object motion), as
   ``motion.chain_flow`` defines.
3. **Per step** ``j = 0 .. L-1`` of trajectory ``k``: the position change ``p_{j+1} - p_j``
   clipped to ``[-clip, clip]`` px (MME clamps at 20 too), and with ``hog`` the histograms of
   :mod:`motionmae.targets.m3traj_hog` (``hog_bins`` bins per ``hog_channels`` channel) of
   frame ``a_t + j`` around ``p_j`` (the departure point: MME's ``VolumeHOG`` fetches HOG at
   the L positions before each step; with camera compensation the real position in that
   frame).
4. **Layout.** Per token the values are ordered ``(k, j, feature)`` with feature ``(dx, dy,
   hog_0 .. hog_{C*bins-1})``, HOG ordered ``(channel, bin)``: ``D = K * L * (2 + C * bins *
   hog)`` (:func:`m3traj_dim`; the paper's 264 = 4 x 6 x (2 + 9) with ``grey``, 696 = 4 x 6 x
   (2 + 27) with ``rgb``).
5. **Normalisation** (``norm``; the functions in :mod:`motionmae.targets.m3traj_norm`):

   * ``batch`` (default): on the collated batch, by :class:`M3TrajTarget` (the workers ship
     pixels and raw histograms): the position changes divided by the batch's RMS position
     change over its weighted tokens (at least ``rms_floor`` px), each histogram
     L2-normalised and the HOG block scaled down where needed so that it never holds more of
     the batch's variance than the positions (``normalize_batch`` in
     :mod:`motionmae.targets.m3traj_norm` says why). Keeps each patch's own motion, speed
     and direction.
   * ``patch_std`` (M3Video's Table 5 and MME's ``--traj_norm PatchStd``). MME's
     ``pretrain/engine.py`` reshapes the position changes to ``[B, tokens, 2 * L, K]`` and
     computes ``(x - mean) / (std + 1e-6)`` with mean and *unbiased* std over the last axis,
     the K trajectories of the patch: every (coordinate, step) feature is z-scored over the
     K trajectories on its own. Here the same is done for every HOG (channel, bin, step)
     feature, so position and shape features never share statistics (MME's code leaves its
     HOG unnormalised; the paper normalises both parts). This removes the patch's mean motion
     and scale: what is left is how the K trajectories differ. MME's deltas are whole pixels
     (its flow is cast to int), so a rigidly moving patch gives exact zeros there; here flow
     is sub-pixel, so such a patch's z-scores are its flow noise at unit scale. At a small
     budget that noise is nearly all a model is asked to predict (docs/benchmarks.md,
     "M3Video trajectory norms"), the reason ``batch`` is the default.
   * ``path_length`` (motionmae before issue 13): a token's position changes divided by the
     mean path length of its ``K`` trajectories (``mean_k sum_j |dp_kj|``), floored at ``1
     px`` so that static patches stay near zero; each point's histogram L2-normalised per
     channel (zeros on flat windows). Keeps direction and shape, removes speed.
   * ``none``: clipped pixels and raw histograms.
6. **Weight** per token: 1 when all ``K`` trajectories stay in the frame and pass the
   forward-backward check over the whole window, else 0 (MME's training step keeps a patch
   when *any* of its trajectories stays in the frame and has no consistency check).

:class:`M3TrajHook` runs this in the loader workers (``needs_dense_frames = True``) and adds
``m3traj`` float32 ``[L_tokens, D]`` and ``m3traj_weight`` float32 ``[L_tokens]`` to the
sample; :class:`M3TrajTarget` hands the collated tensors to the loss, with ``norm: batch``
after normalising them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from motionmae.config_loading import check
from motionmae.motion import (
    FlowConfig,
    chain_dense_grid,
    cumulative_homographies,
    dense_flow,
    estimate_camera_motion,
    patch_grid_queries,
)
from motionmae.motion.protocol import apply_homography, to_gray
from motionmae.targets.m3traj_hog import hog_channel_count, hog_maps, point_hog
from motionmae.targets.m3traj_norm import (
    normalize_batch,
    normalize_patch_std,
    normalize_path_length,
)
from motionmae.targets.registry import TargetContext, register_target
from motionmae.tokens import TokenGrid

if TYPE_CHECKING:
    from motionmae.data.hooks import HookInput

__all__ = [
    "M3TrajHook",
    "M3TrajTarget",
    "m3traj_dim",
    "m3traj_targets",
]

log = logging.getLogger(__name__)

M3TRAJ_NORMS = ("batch", "patch_std", "path_length", "none")
# The default of targets.m3traj.norm; M3Video's own is "patch_std" (its recipe says so).
DEFAULT_M3TRAJ_NORM = "batch"
HOG_CHANNELS = ("rgb", "grey")


@dataclass
class M3TrajTargetConfig:
    """M3Video: K = ``points_per_side**2`` points per patch, followed ``length`` steps (L;
    ``length + 1`` positions) at the full frame rate from the first frame of each tubelet
    through dense flow; target = the L position changes (clipped at ``clip`` px) and, with
    ``hog``, the L trajectory-aligned HOGs (``hog_bins`` bins per ``hog_channels`` channel).

    ``length`` counts steps since issue 13: a config written before with ``length: 6`` (then
    6 positions, 5 steps) now means 6 steps (7 positions, the paper's L = 6), and its target is
    wider (264 instead of 220 values with K = 4 and grey HOG).

    ``norm``: ``batch`` (default: the position changes divided by the batch's RMS position
    change, at least ``rms_floor`` px (a step is one source frame: 0.25 px, not the tracks
    target's 1 px over a tubelet), each HOG L2-normalised and the HOG block kept from
    holding more of the variance than the positions), ``patch_std`` (M3Video's ``traj_norm
    PatchStd``: each position and HOG feature z-scored over the patch's K trajectories),
    ``path_length`` (the position changes divided by the patch's mean path length, each HOG
    L2-normalised; motionmae's scheme before issue 13) or ``none`` (pixels, raw HOG).
    ``hog_channels``: ``rgb`` (a histogram per colour channel, the paper's appendix) or
    ``grey``.

    ``patch_std`` was the default from issue 13 to issue 21. A run's ``config.yaml`` holds
    every key of the sections of its targets, so runs saved then say ``norm: patch_std`` and
    resume with it; configs saved before issue 13 have no ``norm`` (it was ``path_length``)
    but cannot resume anyway, their target being narrower (``length`` above).

    With ``hog`` and ``path_length`` the HOG values held nearly all of the target's variance,
    and on the demo data they drowned the motion (docs/benchmarks.md, "Targets and masking
    at equal budget")."""

    weight: float = 1.0
    points_per_side: int = 2
    length: int = 6
    clip: float = 20.0
    hog: bool = True
    hog_bins: int = 9
    hog_channels: str = "grey"
    norm: str = DEFAULT_M3TRAJ_NORM
    rms_floor: float = 0.25
    camera_compensation: bool = False

    def validate(self, key: str) -> None:
        check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")
        check(self.points_per_side >= 1, f"{key}.points_per_side", "must be >= 1")
        check(self.length >= 1, f"{key}.length", f"must be >= 1 step, got {self.length}")
        check(self.clip > 0, f"{key}.clip", "must be > 0")
        check(self.rms_floor > 0, f"{key}.rms_floor", f"must be > 0, got {self.rms_floor}")
        check(self.hog_bins >= 2, f"{key}.hog_bins", f"must be >= 2, got {self.hog_bins}")
        check(self.hog_channels in HOG_CHANNELS, f"{key}.hog_channels",
               f"must be one of {list(HOG_CHANNELS)}, got {self.hog_channels!r}")
        check(self.norm in M3TRAJ_NORMS, f"{key}.norm",
               f"must be one of {list(M3TRAJ_NORMS)}, got {self.norm!r}")
        check(self.norm != "patch_std" or self.points_per_side >= 2, f"{key}.norm",
               "patch_std z-scores over a patch's trajectories: needs points_per_side >= 2")


def m3traj_dim(cfg: M3TrajTargetConfig, grid: TokenGrid | None = None) -> int:
    """Values per token: ``K * L * (2 + C * hog_bins * hog)``, ``K = points_per_side^2``, ``L
    = length``, ``C`` = 3 (``rgb``) or 1 (``grey``); independent of the grid (``grid`` is
    accepted for symmetry)."""
    return cfg.points_per_side**2 * cfg.length * _features(cfg)


def _features(cfg: M3TrajTargetConfig) -> int:
    return 2 + (cfg.hog_bins * hog_channel_count(cfg.hog_channels) if cfg.hog else 0)


def _check_cfg(cfg: M3TrajTargetConfig, grid: TokenGrid) -> None:
    cfg.validate("targets.m3traj")
    if grid.patch % cfg.points_per_side:
        raise ValueError(f"targets.m3traj.points_per_side: {cfg.points_per_side} does not "
                         f"divide the {grid.patch} px patch")


def _runs(pairs: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct ints -> maximal runs of consecutive values ``(first, last)``."""
    runs: list[tuple[int, int]] = []
    for p in pairs:
        if runs and p == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], p)
        else:
            runs.append((p, p))
    return runs


def _check_inputs(dense_frames: np.ndarray, frame_indices: np.ndarray,
                  grid: TokenGrid) -> np.ndarray:
    if (not isinstance(dense_frames, np.ndarray) or dense_frames.dtype != np.uint8
            or dense_frames.ndim != 4 or dense_frames.shape[1:] != (grid.height, grid.width, 3)):
        shape = getattr(dense_frames, "shape", None)
        raise ValueError(f"dense_frames: expected [F, {grid.height}, {grid.width}, 3] uint8, "
                         f"got {shape} {getattr(dense_frames, 'dtype', type(dense_frames))}")
    idx = np.asarray(frame_indices).astype(np.int64)
    if idx.shape != (grid.frames,):
        raise ValueError(f"frame_indices: expected [{grid.frames}] offsets, got {idx.shape}")
    if idx[0] != 0 or np.any(np.diff(idx) < 0) or idx[-1] >= len(dense_frames):
        raise ValueError(f"frame_indices: expected non-decreasing offsets from 0 into "
                         f"{len(dense_frames)} dense frames (frame_indices - frame_indices[0]), "
                         f"got {idx.tolist()}")
    return idx


def m3traj_targets(
    dense_frames: np.ndarray,
    frame_indices: np.ndarray,
    grid: TokenGrid,
    cfg: M3TrajTargetConfig,
    *,
    flow: FlowConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """M3Video trajectory targets of one clip (see the module docstring).

    Args:
        dense_frames: ``[F, S, S, 3]`` uint8 RGB, every source frame of the clip's span (after
            the same crop/flip as the clip).
        frame_indices: ``[T]`` int offsets of the clip frames into ``dense_frames``
            (``frame_indices - frame_indices[0]``).
        grid: the token grid (``T = grid.frames``, ``S = grid.height = grid.width``).
        cfg: the target's config (``cfg.norm`` selects step 5, which ``batch`` leaves to
            :class:`M3TrajTarget`: pixels and raw histograms; ``cfg.camera_compensation``
            camera compensation).
        flow: dense-flow settings (default ``FlowConfig()``: DIS fast, median 3, fb 1 px).

    Returns:
        ``(values [N, D] float32, weight [N] float32)``, ``N = grid.num_tokens``, ``D =
        m3traj_dim(cfg)``.
    """
    _check_cfg(cfg, grid)
    idx = _check_inputs(dense_frames, frame_indices, grid)
    flow_cfg = flow or FlowConfig()
    n_frames = len(dense_frames)
    steps, k = cfg.length, cfg.points_per_side**2
    positions = steps + 1
    per_side, patch = cfg.points_per_side, grid.patch
    gray = to_gray(dense_frames)

    # 1. windows, and the frame pairs whose flow they need
    starts = [min(int(idx[t * grid.tubelet]), max(n_frames - positions, 0))
              for t in range(grid.t)]
    spans = [min(positions, n_frames - a) for a in starts]  # frames actually available
    pairs = sorted({a + j for a, s in zip(starts, spans, strict=True) for j in range(s - 1)})
    h, w = grid.height, grid.width
    fwd = np.zeros((max(n_frames - 1, 0), h, w, 2), np.float32)
    bwd = np.zeros_like(fwd)
    hom = np.tile(np.eye(3), (max(n_frames - 1, 0), 1, 1)) if cfg.camera_compensation else None
    for first, last in _runs(pairs):
        run = gray[first:last + 2]
        run_h = estimate_camera_motion(run, flow_cfg.camera) if hom is not None else None
        fwd[first:last + 1] = dense_flow(run, flow_cfg, backward=False, homographies=run_h)
        bwd[first:last + 1] = dense_flow(run, flow_cfg, backward=True, homographies=run_h)
        if hom is not None:
            hom[first:last + 1] = run_h

    window = max(patch // per_side, 2)
    hog_cache: dict[int, np.ndarray] = {}
    values = np.zeros((grid.t, grid.spatial, k, steps, _features(cfg)), np.float32)
    weight = np.zeros((grid.t, grid.spatial), np.float32)
    seeds = patch_grid_queries(h, w, patch, per_side)[:, 1:].reshape(grid.spatial, k, 2)
    for t, (a, span) in enumerate(zip(starts, spans, strict=True)):
        # 2. trajectories [L + 1, P, K, 2] (held after the last available frame)
        tracks = np.repeat(seeds[None], positions, axis=0)
        visible = np.ones((grid.spatial, k), bool)
        hs = None
        if span >= 2:
            hs = None if hom is None else hom[a:a + span - 1]
            got, vis = chain_dense_grid(fwd[a:a + span - 1], bwd[a:a + span - 1], patch,
                                        per_side, 0, flow_cfg.fb_threshold, hs)
            tracks = np.concatenate([got, np.repeat(got[-1:], positions - span, axis=0)])
            visible = vis.all(axis=0)
        real = tracks  # positions in the real frames, for the appearance
        if hs is not None:
            cum = cumulative_homographies(hs)
            real = tracks.copy()
            for j in range(span):
                real[j] = apply_homography(cum[j], tracks[j].reshape(-1, 2)).reshape(-1, k, 2)
        if span < positions:
            visible[:] = False
        # 3. per-step features
        values[t, ..., :2] = np.clip(np.diff(tracks, axis=0), -cfg.clip, cfg.clip).transpose(
            1, 2, 0, 3)
        if cfg.hog:
            for j in range(steps):
                frame = min(a + j, n_frames - 1)
                if frame not in hog_cache:
                    hog_cache[frame] = hog_maps(dense_frames[frame], gray[frame], cfg.hog_bins,
                                                window, cfg.hog_channels)
                pos = real[min(j, span - 1)].reshape(-1, 2)
                values[t, :, :, j, 2:] = point_hog(hog_cache[frame], pos).reshape(
                    grid.spatial, k, -1)
        weight[t] = visible.all(axis=1)
    if any(span < positions for span in spans):
        log.debug("m3traj: %d dense frames are fewer than length + 1 = %d; those tubelets get "
                  "weight 0", n_frames, positions)

    # 5. normalisation over each patch's K trajectories (batch: on the collated batch)
    if cfg.norm == "patch_std":
        values = normalize_patch_std(values)
    elif cfg.norm == "path_length":
        values = normalize_path_length(values, cfg.hog_bins)
    return (values.reshape(grid.num_tokens, m3traj_dim(cfg)),
            weight.reshape(grid.num_tokens))


class M3TrajHook:
    """Sample hook (:class:`motionmae.data.hooks.SampleHook`) computing :func:`m3traj_targets`
    in the loader worker on the dense frames.

    Adds ``m3traj`` float32 ``[L, D]`` and ``m3traj_weight`` float32 ``[L]``. Picklable.
    """

    needs_dense_frames = True
    keys = ("m3traj", "m3traj_weight")

    def __init__(self, grid: TokenGrid, cfg: M3TrajTargetConfig,
                 flow: FlowConfig | None = None) -> None:
        _check_cfg(cfg, grid)
        self.grid = grid
        self.cfg = cfg
        self.flow = flow or FlowConfig()
        self.flow.validate()

    def __call__(self, sample: HookInput) -> dict[str, torch.Tensor]:
        if sample.dense_frames is None:
            raise ValueError("M3TrajHook needs the dense frames (needs_dense_frames=True): "
                             "the dataset passed dense_frames=None")
        offsets = np.asarray(sample.frame_indices, np.int64)
        values, weight = m3traj_targets(sample.dense_frames, offsets - offsets[0], self.grid,
                                        self.cfg, flow=self.flow)
        return {"m3traj": torch.from_numpy(values), "m3traj_weight": torch.from_numpy(weight)}

    def __repr__(self) -> str:
        return f"M3TrajHook(dim={m3traj_dim(self.cfg)}, cfg={self.cfg})"


class M3TrajTarget:
    """The M3Video trajectory target: the loader-made ``m3traj`` values and weights.

    ``dim = m3traj_dim(cfg)``; ``__call__(batch)`` returns ``(values [B, L, D],
    batch["m3traj_weight"] [B, L])``: ``batch["m3traj"]`` as it is, or with ``norm: batch``
    normalised over the batch (:func:`~motionmae.targets.m3traj_norm.normalize_batch`).
    """

    name = "m3traj"

    def __init__(self, cfg: M3TrajTargetConfig, grid: TokenGrid) -> None:
        _check_cfg(cfg, grid)
        self.grid = grid
        self.dim = m3traj_dim(cfg, grid)
        self.weight = cfg.weight
        self.norm = cfg.norm
        self.rms_floor = float(cfg.rms_floor)
        self.hog_bins = cfg.hog_bins
        self.layout = (cfg.points_per_side**2, cfg.length, _features(cfg))  # (K, L, F)

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch["m3traj"]``, ``batch["m3traj_weight"]`` -> ``(values [B, L, D], weight
        [B, L])``; no host synchronisation."""
        if "m3traj" not in batch or "m3traj_weight" not in batch:
            raise KeyError("the m3traj target needs batch['m3traj'] [B, L, D] and "
                           "batch['m3traj_weight'] [B, L], made in the loader workers by "
                           "motionmae.targets.m3traj.M3TrajHook")
        values, weight = batch["m3traj"], batch["m3traj_weight"]
        expected = (self.grid.num_tokens, self.dim)
        if values.ndim != 3 or tuple(values.shape[1:]) != expected:
            raise ValueError(f"batch['m3traj']: expected [B, {expected[0]}, {expected[1]}], "
                             f"got {tuple(values.shape)}")
        if tuple(weight.shape) != tuple(values.shape[:2]):
            raise ValueError(f"batch['m3traj_weight']: expected {tuple(values.shape[:2])}, "
                             f"got {tuple(weight.shape)}")
        if self.norm == "batch":
            values = normalize_batch(values.unflatten(-1, self.layout), weight, self.hog_bins,
                                     self.rms_floor).flatten(2)
        return values, weight

    def __repr__(self) -> str:
        return f"M3TrajTarget(dim={self.dim}, norm={self.norm!r})"


def m3traj_hooks(cfg: M3TrajTargetConfig, ctx: TargetContext) -> list[M3TrajHook]:
    return [M3TrajHook(ctx.grid, cfg)]


def check_m3traj_run(cfg: M3TrajTargetConfig, run: Any) -> None:
    """The target's rule across sections: its trajectories run forward through the clip's
    source frames, so clips are not played backward."""
    check(run.data.reverse == 0, "data.reverse",
          "the m3traj target reads every source frame of a clip forward; clips played "
          f"backward are not supported with it (got {run.data.reverse}); set data.reverse=0")


@register_target("m3traj", M3TrajTargetConfig, hooks=m3traj_hooks, check=check_m3traj_run)
def build_m3traj_target(cfg: M3TrajTargetConfig, ctx: TargetContext) -> M3TrajTarget:
    return M3TrajTarget(cfg, ctx.grid)
