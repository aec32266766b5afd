"""Mask generators: which tokens of each clip the encoder does not see.

A generator is called on the batch dict (so motion-aware kinds can read ``batch["tracks"]``)
and returns a bool mask ``[B, L]`` (True = hidden) on the clip's device, with exactly
``num_visible`` visible tokens per row. A kind is one module that registers its builder with
:func:`~motionmae.masking.registry.register_masking`; importing this package registers the
built-in ones (``random``, ``tube``, ``cube``, ``motion``, ``learned``), and
:func:`build_mask_generator` builds the configured one.

A kind whose spec is ``trainable`` (``learned``) has a generator that wraps a trained module
(a :class:`~motionmae.masking.registry.TrainableSampler` as ``generator.sampler``, for
``learned`` the :class:`~motionmae.masking.learned.LearnedSampler`) that the pretraining task
trains inside the model.
:class:`~motionmae.masking.decoder.DecoderMask` picks which hidden tokens the decoders
reconstruct (``masking.decoder_ratio``).
"""

from __future__ import annotations

from motionmae.masking.config import MaskingConfig, default_mask_ratio
from motionmae.masking.cube import cube_mask
from motionmae.masking.decoder import DecoderMask, decoded_subset, running_cell
from motionmae.masking.fixed import RatioMask, keep_lowest, random_mask, tube_mask
from motionmae.masking.learned import LearnedMask, LearnedMaskingConfig, LearnedSampler
from motionmae.masking.motion import (
    MotionAwareMask,
    MotionMaskingConfig,
    motion_aware_mask,
    motion_per_position,
)
from motionmae.masking.registry import (
    MASKINGS,
    MaskGenerator,
    MaskingSpec,
    NoSettings,
    SamplerDraw,
    TrainableSampler,
    register_masking,
)
from motionmae.tokens import TokenGrid

__all__ = [
    "MASKINGS",
    "DecoderMask",
    "LearnedMask",
    "LearnedMaskingConfig",
    "LearnedSampler",
    "MaskGenerator",
    "MaskingConfig",
    "MaskingSpec",
    "MotionAwareMask",
    "MotionMaskingConfig",
    "NoSettings",
    "RatioMask",
    "SamplerDraw",
    "TrainableSampler",
    "build_mask_generator",
    "cube_mask",
    "decoded_subset",
    "default_mask_ratio",
    "keep_lowest",
    "motion_aware_mask",
    "motion_per_position",
    "random_mask",
    "register_masking",
    "running_cell",
    "tube_mask",
]


def build_mask_generator(cfg: MaskingConfig, grid: TokenGrid) -> MaskGenerator:
    """The generator of ``cfg.kind`` at hidden fraction ``cfg.ratio`` (of a resolved config:
    ``PretrainConfig.resolve`` fills a null ratio); every kind keeps
    ``grid.num_visible(ratio)`` tokens per clip (``motion`` reads ``batch["tracks"]``, see
    :class:`MotionAwareMask`)."""
    spec = MASKINGS.get(cfg.kind)
    if cfg.ratio is None:
        raise ValueError("masking.ratio is null: build from a resolved config "
                         "(PretrainConfig.resolve)")
    return spec.build(getattr(cfg, cfg.kind), grid, cfg.ratio)
