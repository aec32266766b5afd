"""The HOF target: histograms of dense optical flow per token, computed in the loader workers.

HOG's motion counterpart (HOG/HOF, Laptev et al. 2008; the flow half of dense trajectories'
descriptors): what moves where, how fast and which way, for every pixel of the patch. The
tracks target holds the motion of one tracked point per patch; this one holds the flow of all
of them, which is what the hand-made HOF reference of ``benchmarks/motion_suite.py`` reads
(docs/benchmarks.md, "What the tracks target holds": the HOF of the dense flow reads speed and
demo motion better than a HOF of the tracks target's points).

Definition, for the clip of ``T`` frames the model sees (tubelet ``u``, patch ``p``):

1. DIS flow between consecutive clip frames (:func:`motionmae.motion.flow.dense_flow` with the
   default :class:`~motionmae.motion.flow.FlowConfig`: ``fast`` preset at finest scale 1, 3 x 3
   median filter): ``T - 1`` fields ``(dx, dy)`` in pixels per clip frame.
2. Per pixel and field, a vote: a vector of at least ``still`` px goes to its orientation bin
   (``bins`` bins centred on ``0, 360 / bins, ...`` degrees, bin 0 on +x, image y down),
   weighted by its magnitude; a shorter one votes 1 into an extra last "still" bin.
3. Tubelet ``t`` owns the fields that start on its frames, ``u * t .. u * t + u - 1`` (the last
   tubelet has one field fewer: no frame follows the clip); a tubelet with none (``u = 1``,
   last frame) takes the clip's last field. Its votes are averaged over those fields and over
   the pixels of each ``cell x cell`` cell of the patch, then square-rooted (tames large flows,
   keeps speed; the votes are >= 0).
4. Values per token ordered ``(cell row, cell column, bin)``: ``dim = (p / cell)^2 * (bins +
   1)`` (36 for 16 px patches, 8 px cells, 8 bins).
5. ``norm``: ``batch`` (default) divides the collated batch's values by their standard
   deviation around the per-value batch mean (one number, detached, at least ``std_floor``),
   so the trivial predictor's error is about 1, as the pixel target's; speed and direction
   differences between clips and tokens are kept. ``none`` keeps the square-rooted votes.

No token weights: every pixel has a flow. The flow sees the clip after augmentation (crop,
resize, flip), as the model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from motionmae.config_loading import check
from motionmae.data.hooks import HookInput
from motionmae.motion.flow import dense_flow
from motionmae.targets.registry import TargetContext, register_target
from motionmae.tokens import TokenGrid

__all__ = ["HofHook", "HofTarget", "HofTargetConfig", "hof_dim", "hof_tokens"]

HOF_NORMS = ("batch", "none")


@dataclass
class HofTargetConfig:
    """Histograms of dense optical flow per token: ``bins`` orientations plus a still bin,
    over ``cell`` x ``cell`` pixel cells, averaged over the tubelet's flow fields."""

    weight: float = 1.0
    bins: int = 8
    cell: int = 8
    still: float = 0.25
    norm: str = "batch"
    std_floor: float = 0.05

    def validate(self, key: str) -> None:
        check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")
        check(self.bins >= 2, f"{key}.bins", f"must be >= 2, got {self.bins}")
        check(self.cell >= 1, f"{key}.cell", f"must be >= 1 pixel, got {self.cell}")
        check(self.still > 0, f"{key}.still", f"must be > 0 px, got {self.still}")
        check(self.norm in HOF_NORMS, f"{key}.norm",
              f"must be one of {list(HOF_NORMS)}, got {self.norm!r}")
        check(self.std_floor > 0, f"{key}.std_floor", f"must be > 0, got {self.std_floor}")


def _check_grid(cfg: HofTargetConfig, grid: TokenGrid) -> None:
    if grid.patch % cfg.cell:
        raise ValueError(f"targets.hof.cell: {cfg.cell} px does not divide the patch "
                         f"({grid.patch} px)")
    if grid.frames < 2:
        raise ValueError(f"the hof target needs clips of at least 2 frames, got {grid.frames}")


def hof_dim(cfg: HofTargetConfig, grid: TokenGrid) -> int:
    """Values per token: ``(patch / cell)^2 * (bins + 1)``."""
    return (grid.patch // cfg.cell) ** 2 * (cfg.bins + 1)


def _fields_of_tubelets(num_fields: int, grid: TokenGrid) -> list[list[int]]:
    """Per tubelet, the indices of the flow fields that start on its frames (step 3)."""
    owned = []
    for t in range(grid.t):
        fields = [s for s in range(t * grid.tubelet, (t + 1) * grid.tubelet) if s < num_fields]
        owned.append(fields or [num_fields - 1])
    return owned


def hof_tokens(flows: np.ndarray, grid: TokenGrid, cfg: HofTargetConfig) -> np.ndarray:
    """The square-rooted HOF of every token (steps 2-4 of the module docstring).

    Args:
        flows: ``[T - 1, H, W, 2]`` float flow fields ``(dx, dy)`` between consecutive clip
            frames, pixels.
        grid: the token grid (``T, H, W`` its clip's).
        cfg: bins, cell and still threshold.

    Returns:
        ``[L, D]`` float32, tokens in ``(t, h, w)`` order, ``D = hof_dim(cfg, grid)``.
    """
    _check_grid(cfg, grid)
    expected = (grid.frames - 1, grid.height, grid.width, 2)
    if flows.shape != expected:
        raise ValueError(f"flows: expected {list(expected)}, got {list(flows.shape)}")
    dx, dy = flows[..., 0], flows[..., 1]
    magnitude = np.hypot(dx, dy)
    # Bins centred on their directions, so that axis-aligned motion does not straddle an edge.
    angle = (np.arctan2(dy, dx) + np.pi / cfg.bins) % (2 * np.pi)
    index = np.minimum((angle * (cfg.bins / (2 * np.pi))).astype(np.int64), cfg.bins - 1)
    slow = magnitude < cfg.still
    index = np.where(slow, cfg.bins, index)
    vote = np.where(slow, 1.0, magnitude)
    # One bincount over (field, cell, bin): a cell's votes summed, then averaged below.
    c, size = cfg.cell, cfg.bins + 1
    rows, cols = grid.height // c, grid.width // c
    cell = (np.arange(grid.height) // c)[:, None] * cols + (np.arange(grid.width) // c)[None, :]
    field = np.arange(len(flows))[:, None, None] * (rows * cols)
    sums = np.bincount(((field + cell) * size + index).ravel(), weights=vote.ravel(),
                       minlength=len(flows) * rows * cols * size)
    per_field = sums.reshape(len(flows), rows, cols, size) / (c * c)
    cells = np.stack([per_field[fields].mean(axis=0)
                      for fields in _fields_of_tubelets(len(flows), grid)])
    per_side = grid.patch // c
    tokens = cells.reshape(grid.t, grid.h, per_side, grid.w, per_side, size)
    tokens = tokens.transpose(0, 1, 3, 2, 4, 5)  # (t, h, w, cell row, cell column, bin)
    return np.sqrt(tokens.reshape(grid.num_tokens, hof_dim(cfg, grid))).astype(np.float32)


class HofHook:
    """Sample hook (:class:`motionmae.data.hooks.SampleHook`): the flow of the sample's frames
    and :func:`hof_tokens` of it, in the loader worker. Adds ``hof`` float32 ``[L, D]``."""

    needs_dense_frames = False
    keys = ("hof",)

    def __init__(self, grid: TokenGrid, cfg: HofTargetConfig) -> None:
        _check_grid(cfg, grid)
        self.grid = grid
        self.cfg = cfg

    def __call__(self, sample: HookInput) -> dict[str, torch.Tensor]:
        frames = np.ascontiguousarray(sample.frames)
        return {"hof": torch.from_numpy(hof_tokens(dense_flow(frames), self.grid, self.cfg))}

    def __repr__(self) -> str:
        return f"HofHook(dim={hof_dim(self.cfg, self.grid)}, cfg={self.cfg})"


def normalize_hof_batch(values: torch.Tensor, floor: float) -> torch.Tensor:
    """``norm=batch``: ``values [B, L, D]`` divided by their standard deviation around the
    per-value mean over the batch's tokens (one number, detached, at least ``floor``)."""
    centred = values - values.mean(dim=(0, 1), keepdim=True)
    scale = centred.square().mean().sqrt().clamp_min(floor).detach()
    return values / scale


class HofTarget:
    """The HOF target: the loader-made ``hof`` values, with ``norm: batch`` scaled over the
    batch. ``__call__(batch)`` returns ``(values [B, L, D], None)``; no host synchronisation."""

    name = "hof"

    def __init__(self, cfg: HofTargetConfig, grid: TokenGrid) -> None:
        _check_grid(cfg, grid)
        self.grid = grid
        self.dim = hof_dim(cfg, grid)
        self.weight = cfg.weight
        self.norm = cfg.norm
        self.std_floor = float(cfg.std_floor)

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        if "hof" not in batch:
            raise KeyError("the hof target needs batch['hof'] [B, L, D], made in the loader "
                           "workers by motionmae.targets.hof.HofHook")
        values = batch["hof"]
        expected = (self.grid.num_tokens, self.dim)
        if values.ndim != 3 or tuple(values.shape[1:]) != expected:
            raise ValueError(f"batch['hof']: expected [B, {expected[0]}, {expected[1]}], "
                             f"got {tuple(values.shape)}")
        if self.norm == "batch":
            values = normalize_hof_batch(values, self.std_floor)
        return values, None

    def __repr__(self) -> str:
        return f"HofTarget(dim={self.dim}, norm={self.norm!r})"


def check_hof_run(cfg: HofTargetConfig, run: Any) -> None:
    """The target's rule across sections: its cells tile the model's patch."""
    patch = run.model.resolved().patch_size
    check(patch % cfg.cell == 0, "targets.hof.cell",
          f"{cfg.cell} px does not divide the patch (model.patch_size {patch} px)")


def hof_hooks(cfg: HofTargetConfig, ctx: TargetContext) -> list[HofHook]:
    return [HofHook(ctx.grid, cfg)]


@register_target("hof", HofTargetConfig, hooks=hof_hooks, check=check_hof_run)
def build_hof_target(cfg: HofTargetConfig, ctx: TargetContext) -> HofTarget:
    return HofTarget(cfg, ctx.grid)
