"""Reconstruction targets: per-token values (and loss weights) the decoders predict.

:func:`build_targets` makes the configured ones through a registry of builders; a new target
(``tracks``, ``hog``, ``m3traj``, ``teacher``) adds a module, a config section and one entry in
``_BUILDERS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from motionmae.config import DataConfig, TargetsConfig
from motionmae.targets.base import Target, masked_mse, per_token_error
from motionmae.targets.hog import HogTarget
from motionmae.targets.m3traj import M3TrajHook, M3TrajTarget, m3traj_dim, m3traj_targets
from motionmae.targets.pixel import (
    PixelTarget,
    denormalize_prediction,
    normalize_patches,
    patch_statistics,
)
from motionmae.targets.teacher import TeacherTarget
from motionmae.targets.tracks import TracksTarget
from motionmae.tokens import TokenGrid

__all__ = [
    "HogTarget",
    "M3TrajHook",
    "M3TrajTarget",
    "PixelTarget",
    "Target",
    "TeacherTarget",
    "TracksTarget",
    "build_targets",
    "denormalize_prediction",
    "m3traj_dim",
    "m3traj_targets",
    "masked_mse",
    "normalize_patches",
    "patch_statistics",
    "per_token_error",
]

TargetBuilder = Callable[[TargetsConfig, TokenGrid, DataConfig], Target]


def _pixel(cfg: TargetsConfig, grid: TokenGrid, data: DataConfig) -> Target:
    return PixelTarget(cfg.pixel, grid, data.mean, data.std)


def _tracks(cfg: TargetsConfig, grid: TokenGrid, data: DataConfig) -> Target:
    # the weight's default depends on the other targets (0.25 next to a teacher)
    return TracksTarget(dataclasses.replace(cfg.tracks, weight=cfg.loss_weight("tracks")), grid)


def _hog(cfg: TargetsConfig, grid: TokenGrid, data: DataConfig) -> Target:
    return HogTarget(cfg.hog, grid, data.mean, data.std)


def _m3traj(cfg: TargetsConfig, grid: TokenGrid, data: DataConfig) -> Target:
    return M3TrajTarget(cfg.m3traj, grid)


def _teacher(cfg: TargetsConfig, grid: TokenGrid, data: DataConfig) -> Target:
    return TeacherTarget(cfg.teacher, grid, data.mean, data.std)


_BUILDERS: dict[str, TargetBuilder] = {
    "pixel": _pixel,
    "tracks": _tracks,
    "hog": _hog,
    "m3traj": _m3traj,
    "teacher": _teacher,
}


def build_targets(cfg: TargetsConfig, grid: TokenGrid, data_cfg: DataConfig) -> dict[str, Target]:
    """The targets named in ``cfg.names``, in that order, keyed by name."""
    unknown = [name for name in cfg.names if name not in _BUILDERS]
    if unknown:
        raise ValueError(f"targets.names: unknown {unknown}; known: {sorted(_BUILDERS)}")
    return {name: _BUILDERS[name](cfg, grid, data_cfg) for name in cfg.names}
