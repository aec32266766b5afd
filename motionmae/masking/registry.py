"""The masking registry: a masking kind is one module that registers a builder with
:func:`register_masking`, beside its config dataclass (``masking.<kind>``).

A :class:`MaskingSpec` gives the kind's name (``masking.kind``, ``--masking``), its config
dataclass, how to build its generator for a token grid and hidden fraction, and whether it
needs point tracks in the batch (the loader then computes them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from motionmae.registry import Registry
from motionmae.tokens import TokenGrid


@runtime_checkable
class MaskGenerator(Protocol):
    """Makes the mask of a batch: ``mask [B, L]`` bool, True = hidden, exactly
    ``num_visible`` visible tokens per row."""

    num_visible: int

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


@dataclass
class NoSettings:
    """The config of a masking kind without settings of its own (``random``, ``tube``)."""


MaskBuilder = Callable[[Any, TokenGrid, float], MaskGenerator]


@dataclass(frozen=True)
class MaskingSpec:
    """One registered masking kind: ``build(section, grid, ratio)`` returns its generator;
    ``needs_tracks(section)`` whether its batches must carry point tracks."""

    name: str
    config: type
    build: MaskBuilder
    needs_tracks: Callable[[Any], bool]


MASKINGS: Registry[MaskingSpec] = Registry("masking kind", "masking.kind")


def register_masking(name: str, config: type = NoSettings, *,
                     needs_tracks: bool | Callable[[Any], bool] = False,
                     ) -> Callable[[MaskBuilder], MaskBuilder]:
    """Register the decorated ``build(section, grid, ratio) -> MaskGenerator`` as masking
    kind ``name``; ``needs_tracks`` is a flag or a function of the kind's section::

        @register_masking("centre", needs_tracks=False)
        def build_centre(cfg: NoSettings, grid: TokenGrid, ratio: float) -> MaskGenerator:
            return CentreMask(grid, ratio)
    """
    wants_tracks = needs_tracks if callable(needs_tracks) else (lambda section: needs_tracks)

    def decorate(build: MaskBuilder) -> MaskBuilder:
        MASKINGS.add(MaskingSpec(name, config, build, wants_tracks))
        return build

    return decorate
