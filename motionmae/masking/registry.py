"""The masking registry: a masking kind is one module that registers a builder with
:func:`register_masking`, beside its config dataclass (``masking.<kind>``).

A :class:`MaskingSpec` gives the kind's name (``masking.kind``, ``--masking``), its config
dataclass, how to build its generator for a token grid and hidden fraction, whether it needs
point tracks in the batch (the loader then computes them), whether it is trained with the
autoencoder (its generator carries a :class:`TrainableSampler`) and its own rules across the
run config's sections. Readers ask the spec, never a kind's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from motionmae.registry import Registry, RunCheck
from motionmae.tokens import TokenGrid


@runtime_checkable
class MaskGenerator(Protocol):
    """Makes the mask of a batch: ``mask [B, L]`` bool, True = hidden, exactly
    ``num_visible`` visible tokens per row."""

    num_visible: int

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


class SamplerDraw(Protocol):
    """One draw of a :class:`TrainableSampler`: what its loss needs, and the mask."""

    mask: torch.Tensor


@runtime_checkable
class TrainableSampler(Protocol):
    """The module a trainable masking kind's generator carries as ``generator.sampler``: the
    pretraining model holds it as ``sampler.*`` (saved and resumed with the weights, left out
    by ``load_encoder``), it has its own parameter group, and its loss joins the autoencoder's.

    An ``nn.Module``; ``cfg``: its section, with ``lr`` (the peak learning rate of its
    parameter group, on the run's schedule) and ``loss_weight`` (its loss's weight in the
    joint loss). ``sampler(batch, generator)`` draws the batch's mask (``draw.mask [B, L]``,
    True = hidden); ``loss(draw, token_error [B, M], masked_idx [B, M])`` returns its loss and
    named parts to log, from the detached per-token errors of the decoded hidden tokens.
    """

    cfg: Any

    def __call__(self, batch: dict[str, torch.Tensor],
                 generator: torch.Generator | None = None) -> SamplerDraw: ...

    def loss(self, draw: Any, token_error: torch.Tensor, masked_idx: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


@dataclass
class NoSettings:
    """The config of a masking kind without settings of its own (``random``, ``tube``)."""


MaskBuilder = Callable[[Any, TokenGrid, float], MaskGenerator]


@dataclass(frozen=True)
class MaskingSpec:
    """One registered masking kind: ``build(section, grid, ratio)`` returns its generator;
    ``needs_tracks(section)`` whether its batches must carry point tracks; ``trainable``
    whether the generator carries a :class:`TrainableSampler` (``generator.sampler``) that
    the pretraining task trains with the model; ``check(section, run)`` its rules across the
    run config's sections (:data:`~motionmae.registry.RunCheck`)."""

    name: str
    config: type
    build: MaskBuilder
    needs_tracks: Callable[[Any], bool]
    trainable: bool = False
    check: RunCheck | None = None


MASKINGS: Registry[MaskingSpec] = Registry("masking kind", "masking.kind")


def register_masking(name: str, config: type = NoSettings, *,
                     needs_tracks: bool | Callable[[Any], bool] = False,
                     trainable: bool = False, check: RunCheck | None = None,
                     ) -> Callable[[MaskBuilder], MaskBuilder]:
    """Register the decorated ``build(section, grid, ratio) -> MaskGenerator`` as masking
    kind ``name``; ``needs_tracks`` is a flag or a function of the kind's section (the other
    keywords are the :class:`MaskingSpec` facts)::

        @register_masking("centre", needs_tracks=False)
        def build_centre(cfg: NoSettings, grid: TokenGrid, ratio: float) -> MaskGenerator:
            return CentreMask(grid, ratio)
    """
    wants_tracks = needs_tracks if callable(needs_tracks) else (lambda section: needs_tracks)

    def decorate(build: MaskBuilder) -> MaskBuilder:
        MASKINGS.add(MaskingSpec(name, config, build, wants_tracks, trainable, check))
        return build

    return decorate
