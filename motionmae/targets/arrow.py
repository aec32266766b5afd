"""The arrow-of-time target: every token predicts whether its clip plays backward.

Arrow of time as a self-supervised pretext (Pickup et al., CVPR 2014; Wei et al., "Learning
and Using the Arrow of Time", CVPR 2018): with ``data.reverse`` the loader plays a training
clip backward with that probability, and this target asks every masked token's decoder for
the clip's direction. Pixels and tracks are the same under time reversal up to order and
sign; what tells the two apart (gravity, inertia, things that fall, spread or break, the way
a camera moves) is what a masked autoencoder otherwise has no reason to keep.

Definition, for a batch of clips with source frame indices ``frame_indices [B, T]`` (the
loader's; a clip played backward has them in descending order): every token of clip ``b``
gets the value ``+1`` when ``frame_indices[b, -1] < frame_indices[b, 0]`` (backward) and
``-1`` otherwise. ``[B, L, 1]``, no token weights; the decoder's per-token output is
regressed to it with the masked MSE every target shares, so a constant prediction explains
nothing and a model that reads the direction explains up to all of it.

The run check refuses the target unless ``data.reverse`` is strictly between 0 and 1 (at 0
or 1 every clip has one direction: nothing to learn).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from motionmae.config_loading import check
from motionmae.targets.registry import TargetContext, register_target
from motionmae.tokens import TokenGrid

__all__ = ["ArrowTarget", "ArrowTargetConfig", "clip_direction"]


@dataclass
class ArrowTargetConfig:
    """The clip's direction of play, +1 backward and -1 forward, at every token."""

    weight: float = 1.0

    def validate(self, key: str) -> None:
        check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")


def clip_direction(frame_indices: torch.Tensor) -> torch.Tensor:
    """``frame_indices [B, T]`` (source frame of each clip frame) -> ``[B]`` float32: +1 where
    the clip plays backward (last index below the first), -1 where it plays forward."""
    if frame_indices.ndim != 2 or frame_indices.shape[1] < 2:
        raise ValueError("frame_indices: expected [B, T] with T >= 2, got "
                         f"{tuple(frame_indices.shape)}")
    backward = frame_indices[:, -1] < frame_indices[:, 0]
    return backward.float() * 2 - 1


class ArrowTarget:
    """``__call__(batch)`` -> ``(direction [B, L, 1], None)`` from ``batch['frame_indices']``
    (:func:`clip_direction`); no host synchronisation."""

    name = "arrow"
    dim = 1

    def __init__(self, cfg: ArrowTargetConfig, grid: TokenGrid) -> None:
        if grid.frames < 2:
            raise ValueError(f"the arrow target needs clips of at least 2 frames, got "
                             f"{grid.frames}")
        self.grid = grid
        self.weight = cfg.weight

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        if "frame_indices" not in batch:
            raise KeyError("the arrow target needs batch['frame_indices'] [B, T], which the "
                           "loader adds to every sample")
        direction = clip_direction(batch["frame_indices"])
        values = direction[:, None, None].expand(-1, self.grid.num_tokens, 1)
        return values, None

    def __repr__(self) -> str:
        return "ArrowTarget(dim=1)"


def check_arrow_run(cfg: ArrowTargetConfig, run: Any) -> None:
    """The target's rule across sections: some clips, not all, play backward."""
    check(0 < run.data.reverse < 1, "data.reverse",
          "the arrow target needs some clips played backward and some forward: set "
          f"data.reverse between 0 and 1, e.g. 0.5 (got {run.data.reverse})")


@register_target("arrow", ArrowTargetConfig, check=check_arrow_run)
def build_arrow_target(cfg: ArrowTargetConfig, ctx: TargetContext) -> ArrowTarget:
    return ArrowTarget(cfg, ctx.grid)
