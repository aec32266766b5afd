"""Reconstruction targets: per-token values (and loss weights) the decoders predict.

A target is one module: its config dataclass, its :class:`Target` and a builder registered
with :func:`~motionmae.targets.registry.register_target`. Importing this package registers
the built-in ones (``pixel``, ``tracks``, ``hog``, ``hof``, ``m3traj``, ``teacher``,
``arrow``);
:func:`build_targets` builds those a run names.
"""

from __future__ import annotations

from motionmae.data.config import DataConfig
from motionmae.targets.arrow import ArrowTarget, ArrowTargetConfig, clip_direction
from motionmae.targets.base import Target
from motionmae.targets.config import TargetsConfig
from motionmae.targets.hof import HofHook, HofTarget, HofTargetConfig, hof_dim, hof_tokens
from motionmae.targets.hog import HogTarget, HogTargetConfig
from motionmae.targets.m3traj import (
    M3TrajHook,
    M3TrajTarget,
    M3TrajTargetConfig,
    m3traj_dim,
    m3traj_targets,
)
from motionmae.targets.pixel import (
    PixelTarget,
    PixelTargetConfig,
    denormalize_prediction,
    normalize_patches,
    patch_statistics,
)
from motionmae.targets.registry import TARGETS, TargetContext, TargetSpec, register_target
from motionmae.targets.teacher import TeacherTarget, TeacherTargetConfig
from motionmae.targets.teacher_cache import build_teacher_target
from motionmae.targets.tracks import TracksTarget, TracksTargetConfig
from motionmae.tokens import (
    TokenGrid,
    explained_fraction,
    masked_mse,
    per_token_error,
    trivial_mse,
)

__all__ = [
    "TARGETS",
    "ArrowTarget",
    "ArrowTargetConfig",
    "HofHook",
    "HofTarget",
    "HofTargetConfig",
    "HogTarget",
    "HogTargetConfig",
    "M3TrajHook",
    "M3TrajTarget",
    "M3TrajTargetConfig",
    "PixelTarget",
    "PixelTargetConfig",
    "Target",
    "TargetContext",
    "TargetSpec",
    "TargetsConfig",
    "TeacherTarget",
    "TeacherTargetConfig",
    "TracksTarget",
    "TracksTargetConfig",
    "build_targets",
    "build_teacher_target",
    "clip_direction",
    "denormalize_prediction",
    "explained_fraction",
    "hof_dim",
    "hof_tokens",
    "m3traj_dim",
    "m3traj_targets",
    "masked_mse",
    "normalize_patches",
    "patch_statistics",
    "per_token_error",
    "register_target",
    "trivial_mse",
]


def build_targets(cfg: TargetsConfig, grid: TokenGrid, data_cfg: DataConfig,
                  cache: str | None = None) -> dict[str, Target]:
    """The targets named in ``cfg.names``, in that order, keyed by name (``cache``: the
    offline cache folder, ``cache.path``); a null weight becomes the target's default
    for this run's targets."""
    ctx = TargetContext(grid, data_cfg, tuple(cfg.names), cache)
    return {name: TARGETS.get(name).build(cfg.section_to_build(name), ctx) for name in cfg.names}
