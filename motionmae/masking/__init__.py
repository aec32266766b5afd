"""Mask generators: which tokens of each clip the encoder does not see.

A generator is called on the batch dict (so motion-aware kinds can read ``batch["tracks"]``)
and returns a bool mask ``[B, L]`` (True = hidden) on the clip's device, with exactly
``num_visible`` visible tokens per row. Build one from the config with
:func:`build_mask_generator`; add a kind by adding a class and an entry to ``_KINDS``
(a builder ``(MaskingConfig, TokenGrid) -> MaskGenerator``).

``masking.kind = learned`` is not built here: its generator is a trained module that lives
in the pretraining model (:class:`~motionmae.masking.learned.LearnedSampler`; the
pretraining task builds it). :class:`~motionmae.masking.decoder.DecoderMask` picks which
hidden tokens the decoders reconstruct (``masking.decoder_ratio``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch

from motionmae.config import MaskingConfig
from motionmae.masking.cube import cube_mask
from motionmae.masking.decoder import DecoderMask, decoded_subset, running_cell
from motionmae.masking.fixed import keep_lowest, random_mask, tube_mask
from motionmae.masking.learned import LearnedMask, LearnedSampler
from motionmae.masking.motion import MotionAwareMask, motion_aware_mask, motion_per_position
from motionmae.tokens import TokenGrid

__all__ = [
    "DecoderMask",
    "LearnedMask",
    "LearnedSampler",
    "MaskGenerator",
    "MotionAwareMask",
    "RatioMask",
    "build_mask_generator",
    "cube_mask",
    "decoded_subset",
    "keep_lowest",
    "motion_aware_mask",
    "motion_per_position",
    "random_mask",
    "running_cell",
    "tube_mask",
]


@runtime_checkable
class MaskGenerator(Protocol):
    """Makes the mask of a batch: ``mask [B, L]`` bool, True = hidden."""

    num_visible: int

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


MaskFunction = Callable[..., torch.Tensor]


class RatioMask:
    """A mask generator around a fixed-count mask function (:func:`random_mask`,
    :func:`tube_mask`, :func:`cube_mask`).

    Reads ``batch["clip"]`` ``[B, C, T, H, W]`` for the batch size and device only. The
    noise is drawn on ``generator``'s device (CPU generators work for CUDA clips: the mask is
    moved over, a small copy without a host sync).
    """

    def __init__(self, fn: MaskFunction, grid: TokenGrid, ratio: float) -> None:
        self.fn = fn
        self.grid = grid
        self.ratio = ratio
        self.num_visible = grid.num_visible(ratio)
        self.num_masked = grid.num_tokens - self.num_visible

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``batch["clip"] [B, C, T, H, W]`` -> ``mask [B, L]`` bool on the clip's device."""
        clip = batch["clip"]
        return self.fn(clip.shape[0], self.grid, self.ratio, generator, clip.device)

    def __repr__(self) -> str:
        return f"RatioMask({self.fn.__name__}, ratio={self.ratio}, visible={self.num_visible})"


MaskBuilder = Callable[[MaskingConfig, TokenGrid], MaskGenerator]

_KINDS: dict[str, MaskBuilder] = {
    "random": lambda cfg, grid: RatioMask(random_mask, grid, cfg.ratio),
    "tube": lambda cfg, grid: RatioMask(tube_mask, grid, cfg.ratio),
    "cube": lambda cfg, grid: RatioMask(cube_mask, grid, cfg.ratio),
    "motion": MotionAwareMask,
}


def build_mask_generator(cfg: MaskingConfig, grid: TokenGrid) -> MaskGenerator:
    """The generator for ``cfg.kind`` (``random``, ``tube``, ``cube`` or ``motion``) at hidden
    fraction ``cfg.ratio``; all keep ``grid.num_visible(cfg.ratio)`` tokens per clip
    (``motion`` reads ``batch["tracks"]``, see :class:`MotionAwareMask`)."""
    if cfg.kind == "learned":
        raise ValueError("masking.kind=learned: the learned sampler is a trained module; build "
                         "a LearnedSampler (the pretraining task does) and use LearnedMask")
    if cfg.kind not in _KINDS:
        raise ValueError(f"masking.kind: unknown kind {cfg.kind!r}; known: {sorted(_KINDS)}")
    return _KINDS[cfg.kind](cfg, grid)
