"""The M3Video (masked motion encoding) trajectory target, computed in the loader workers.

For every tubelet the points of a regular sub-grid of each patch are followed through dense
optical flow at the **full frame rate** (the source frames between the clip's frames, which the
model never sees: the targets are temporally denser than the input), and each token predicts
the shape of its trajectories and the appearance along them.

Definition, for a clip of ``T`` frames with source offsets ``frame_indices`` (relative:
``frame_indices[0] == 0``) into ``F`` dense frames, ``K = points_per_side^2`` and ``n =
length - 1`` steps:

1. **Window.** Tubelet ``t`` starts at dense frame ``d_t = frame_indices[t * tubelet]`` and its
   trajectories cover the ``length`` dense frames ``a_t .. a_t + n`` with ``a_t = min(d_t, F -
   length)``: where the window would run past the last dense frame it is shifted back to end
   there (it still covers the tubelet's own frames, and every step is measured, not held). If
   ``F < length`` the window is cut at ``F`` and held (zero steps, repeated appearance) and the
   tubelet's tokens get weight 0. A data side that decodes ``length - 1`` frames past the clip's
   last frame gets unshifted windows for free.
2. **Points.** ``motion.patch_grid_queries(S, S, patch, points_per_side)`` in dense frame
   ``a_t`` (sub-patch centres, token order), chained forwards through DIS flow (``fast``
   preset, 3 x 3 median filter, forward-backward check at 1 px: ``motion.chain_dense_grid``).
   Flow is computed once per needed frame pair and shared by all tubelets. With
   ``camera_compensation`` the flow is the residual after a per-pair homography and the
   positions are in the window's first frame with camera motion removed (object motion), as
   ``motion.chain_flow`` defines.
3. **Per step** ``j = 0 .. n-1`` of trajectory ``k``: the position change ``p_{j+1} - p_j``
   clipped to ``[-clip, clip]`` px, and with ``hog`` a ``hog_bins``-bin HOG of the grey frame
   ``a_t + j`` around ``p_j`` (the departure point, as M3Video/MME fetch HOG at each
   position but the last; with camera compensation the real position in that frame): the
   magnitude-weighted, soft-binned (unsigned, bin ``i`` centred at ``i * 180 / bins`` deg)
   Sobel gradients averaged over a ``c x c`` window, ``c = patch // points_per_side`` (each
   point's own share of the patch), bilinearly sampled at the point and L2-normalised
   (zeros on flat windows).
4. **Layout.** Per token the values are ordered ``(k, j, feature)`` with feature ``(dx, dy,
   hog_0 .. hog_{bins-1})``: ``D = K * (length - 1) * (2 + hog_bins * hog)``
   (:func:`m3traj_dim`; 220 with the defaults).
5. **Normalisation** (``normalize=True``): M3Video's per-patch ("mean") trajectory
   normalisation: a token's position changes are divided by the mean path length of its ``K``
   trajectories (``mean_k sum_j |dp_kj|``), floored at ``1 px`` so that static patches stay
   near zero instead of blowing sub-pixel flow noise up to unit scale. This keeps the direction
   and shape of the motion and removes its speed. The HOG values are already L2-normalised per
   point and step and are left as they are.
6. **Weight** per token: 1 when all ``K`` trajectories stay in the frame and pass the
   forward-backward check over the whole window (M3Video keeps a patch only when all its
   trajectories are valid), else 0.

:class:`M3TrajHook` runs this in the loader workers (``needs_dense_frames = True``) and adds
``m3traj`` float32 ``[L, D]`` and ``m3traj_weight`` float32 ``[L]`` to the sample;
:class:`M3TrajTarget` hands the collated tensors to the loss.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from motionmae.config import M3TrajTargetConfig
from motionmae.motion import (
    FlowConfig,
    chain_dense_grid,
    cumulative_homographies,
    dense_flow,
    estimate_camera_motion,
    patch_grid_queries,
)
from motionmae.motion._common import apply_homography, sample_bilinear, to_gray
from motionmae.tokens import TokenGrid

if TYPE_CHECKING:
    from motionmae.data.hooks import HookInput

__all__ = [
    "M3TrajHook",
    "M3TrajTarget",
    "m3traj_dim",
    "m3traj_targets",
    "point_hog",
]

log = logging.getLogger(__name__)

PATH_FLOOR = 1.0  # px: the smallest mean path length a token's deltas are divided by
HOG_EPS = 1e-6


def m3traj_dim(cfg: M3TrajTargetConfig, grid: TokenGrid | None = None) -> int:
    """Values per token: ``K * (length - 1) * (2 + hog_bins * hog)``, ``K =
    points_per_side^2`` (independent of the grid; ``grid`` is accepted for symmetry)."""
    k = cfg.points_per_side**2
    return k * (cfg.length - 1) * (2 + (cfg.hog_bins if cfg.hog else 0))


def _check_cfg(cfg: M3TrajTargetConfig, grid: TokenGrid) -> None:
    if cfg.hog and cfg.hog_bins < 2:
        raise ValueError(f"targets.m3traj.hog_bins: must be >= 2, got {cfg.hog_bins}")
    if grid.patch % cfg.points_per_side:
        raise ValueError(f"targets.m3traj.points_per_side: {cfg.points_per_side} does not "
                         f"divide the {grid.patch} px patch")


def _orientation_maps(gray: np.ndarray, bins: int, window: int) -> np.ndarray:
    """``[H, W]`` uint8 -> ``[H, W, bins]`` float32: at each pixel the soft-binned,
    magnitude-weighted gradient orientations averaged over the ``window x window`` box around
    it (reflected borders)."""
    image = gray.astype(np.float32)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    magnitude, angle = cv2.cartToPolar(gx, gy)  # angle in [0, 2 pi)
    position = np.mod(angle * np.float32(bins / np.pi), bins).ravel()  # [0, bins)
    lower = np.minimum(position.astype(np.int64), bins - 1)
    magnitude = magnitude.ravel()
    upper_share = (position - lower) * magnitude
    upper = lower + 1
    upper[upper == bins] = 0
    maps = np.zeros(gray.size * bins, np.float32)
    base = np.arange(0, gray.size * bins, bins)
    maps[base + lower] = magnitude - upper_share  # two votes per pixel, to distinct bins
    maps[base + upper] = upper_share
    maps = maps.reshape(*gray.shape, bins)
    return cv2.boxFilter(maps, -1, (window, window), normalize=True,
                         borderType=cv2.BORDER_REFLECT_101)


def point_hog(maps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """HOG of the windows around ``[n, 2]`` ``(x, y)`` points from :func:`_orientation_maps`
    ``[H, W, bins]``: bilinear lookup (clamped at the border), L2-normalised. ``[n, bins]``."""
    hist = sample_bilinear(maps, points)
    return hist / (np.linalg.norm(hist, axis=1, keepdims=True) + HOG_EPS)


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
    normalize: bool = True,
    flow: FlowConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """M3Video trajectory targets of one clip (see the module docstring).

    Args:
        dense_frames: ``[F, S, S, 3]`` uint8 RGB, every source frame of the clip's span (after
            the same crop/flip as the clip).
        frame_indices: ``[T]`` int offsets of the clip frames into ``dense_frames``
            (``frame_indices - frame_indices[0]``).
        grid: the token grid (``T = grid.frames``, ``S = grid.height = grid.width``).
        cfg: the target's config.
        normalize: apply step 5 (per-patch path-length normalisation); ``False`` gives the
            clipped pixel deltas.
        flow: dense-flow settings (default ``FlowConfig()``: DIS fast, median 3, fb 1 px);
            ``cfg.camera_compensation`` decides camera compensation.

    Returns:
        ``(values [L, D] float32, weight [L] float32)``, ``L = grid.num_tokens``, ``D =
        m3traj_dim(cfg)``.
    """
    _check_cfg(cfg, grid)
    idx = _check_inputs(dense_frames, frame_indices, grid)
    flow_cfg = flow or FlowConfig()
    n_frames = len(dense_frames)
    length, steps, k = cfg.length, cfg.length - 1, cfg.points_per_side**2
    per_side, patch = cfg.points_per_side, grid.patch
    gray = to_gray(dense_frames)

    # 1. windows, and the frame pairs whose flow they need
    starts = [min(int(idx[t * grid.tubelet]), max(n_frames - length, 0)) for t in range(grid.t)]
    spans = [min(length, n_frames - a) for a in starts]  # frames actually available
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
    feat = 2 + (cfg.hog_bins if cfg.hog else 0)
    values = np.zeros((grid.t, grid.spatial, k, steps, feat), np.float32)
    weight = np.zeros((grid.t, grid.spatial), np.float32)
    seeds = patch_grid_queries(h, w, patch, per_side)[:, 1:].reshape(grid.spatial, k, 2)
    for t, (a, span) in enumerate(zip(starts, spans, strict=True)):
        # 2. trajectories [length, P, K, 2] (held after the last available frame)
        tracks = np.repeat(seeds[None], length, axis=0)
        visible = np.ones((grid.spatial, k), bool)
        hs = None
        if span >= 2:
            hs = None if hom is None else hom[a:a + span - 1]
            got, vis = chain_dense_grid(fwd[a:a + span - 1], bwd[a:a + span - 1], patch,
                                        per_side, 0, flow_cfg.fb_threshold, hs)
            tracks = np.concatenate([got, np.repeat(got[-1:], length - span, axis=0)])
            visible = vis.all(axis=0)
        real = tracks  # positions in the real frames, for the appearance
        if hs is not None:
            cum = cumulative_homographies(hs)
            real = tracks.copy()
            for j in range(span):
                real[j] = apply_homography(cum[j], tracks[j].reshape(-1, 2)).reshape(-1, k, 2)
        if span < length:
            visible[:] = False
        # 3. per-step features
        values[t, ..., :2] = np.clip(np.diff(tracks, axis=0), -cfg.clip, cfg.clip).transpose(
            1, 2, 0, 3)
        if cfg.hog:
            for j in range(steps):
                frame = min(a + j, n_frames - 1)
                if frame not in hog_cache:
                    hog_cache[frame] = _orientation_maps(gray[frame], cfg.hog_bins, window)
                pos = real[min(j, span - 1)].reshape(-1, 2)
                values[t, :, :, j, 2:] = point_hog(hog_cache[frame], pos).reshape(-1, k,
                                                                                   cfg.hog_bins)
        weight[t] = visible.all(axis=1)
    if any(span < length for span in spans):
        log.debug("m3traj: %d dense frames are fewer than length=%d; those tubelets get weight 0",
                  n_frames, length)

    # 5. per-patch normalisation of the position changes
    if normalize:
        delta = values[..., :2]  # [t, P, K, n, 2]
        path = np.linalg.norm(delta, axis=-1).sum(axis=-1).mean(axis=-1)  # [t, P]
        delta /= np.maximum(path, PATH_FLOOR)[..., None, None, None]
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

    ``dim = m3traj_dim(cfg)``; ``__call__(batch)`` returns ``(batch["m3traj"] [B, L, D],
    batch["m3traj_weight"] [B, L])``.
    """

    name = "m3traj"

    def __init__(self, cfg: M3TrajTargetConfig, grid: TokenGrid) -> None:
        _check_cfg(cfg, grid)
        self.grid = grid
        self.dim = m3traj_dim(cfg, grid)
        self.weight = cfg.weight

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch["m3traj"]``, ``batch["m3traj_weight"]`` -> ``(values [B, L, D], weight
        [B, L])``."""
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
        return values, weight

    def __repr__(self) -> str:
        return f"M3TrajTarget(dim={self.dim})"
