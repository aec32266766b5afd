"""The target registry: a reconstruction target is one module that defines its config
dataclass and registers a builder with :func:`register_target`.

A :class:`TargetSpec` says everything the rest of the library needs to know of a target:
its name (the config key ``targets.<name>`` and the ``--targets`` name), its config
dataclass, how to build it for a run, which loader hooks it needs (they run in the data
workers on the clip's uint8 frames), whether it needs point tracks, whether it can read
from the offline cache, whether it predicts a frozen model's features, its own rules across
the run config's sections, and its default loss weight (next to the run's other targets)
when its section leaves ``weight`` null. Readers ask the spec, never a target's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from motionmae.registry import Registry, RunCheck

if TYPE_CHECKING:
    from motionmae.data.config import DataConfig
    from motionmae.data.hooks import SampleHook
    from motionmae.targets.base import Target
    from motionmae.tokens import TokenGrid


@dataclass(frozen=True)
class TargetContext:
    """What a target is built from besides its own section.

    ``names``: every target of the run, in order (a default weight may depend on them);
    ``cache``: the offline cache folder (``cache.path``), or None.
    """

    grid: TokenGrid
    data: DataConfig
    names: tuple[str, ...]
    cache: str | None = None


TargetBuilder = Callable[[Any, TargetContext], "Target"]
HooksBuilder = Callable[[Any, TargetContext], "list[SampleHook]"]
# ``default_weight(specs)``: a target's loss weight next to the run's targets (their specs,
# itself included), e.g. TrackMAE's 0.25 for tracks next to a feature target.
DefaultWeight = Callable[[Sequence["TargetSpec"]], float]


@dataclass(frozen=True)
class TargetSpec:
    """One registered target (see the module docstring).

    ``build(section, ctx)`` returns the :class:`~motionmae.targets.base.Target`;
    ``hooks(section, ctx)`` the loader hooks whose entries it reads (None: it reads only the
    clip); ``predicts_features``: it regresses a frozen model's features (a teacher), which
    other targets' default weights may depend on; ``check(section, run)`` its rules across the
    run config's sections (:data:`~motionmae.registry.RunCheck`); ``default_weight(specs)`` its
    weight when ``section.weight`` is null.
    """

    name: str
    config: type
    build: TargetBuilder
    hooks: HooksBuilder | None = None
    needs_tracks: bool = False
    cacheable: bool = False
    predicts_features: bool = False
    check: RunCheck | None = None
    default_weight: DefaultWeight | None = None

    def loss_weight(self, section: Any, run_targets: Sequence[TargetSpec]) -> float:
        """``section.weight``, or when it is null the default next to ``run_targets``."""
        weight = getattr(section, "weight", None)
        if weight is not None:
            return float(weight)
        return self.default_weight(run_targets) if self.default_weight is not None else 1.0


TARGETS: Registry[TargetSpec] = Registry("target", "targets.names")


def register_target(name: str, config: type, *, hooks: HooksBuilder | None = None,
                    needs_tracks: bool = False, cacheable: bool = False,
                    predicts_features: bool = False, check: RunCheck | None = None,
                    default_weight: DefaultWeight | None = None,
                    ) -> Callable[[TargetBuilder], TargetBuilder]:
    """Register the decorated ``build(section, ctx) -> Target`` as target ``name`` (the
    keywords are the :class:`TargetSpec` facts)::

        @register_target("flow_mag", FlowMagConfig, needs_tracks=True)
        def build_flow_mag(cfg: FlowMagConfig, ctx: TargetContext) -> Target:
            return FlowMagTarget(cfg, ctx.grid)
    """

    def decorate(build: TargetBuilder) -> TargetBuilder:
        TARGETS.add(TargetSpec(name, config, build, hooks, needs_tracks, cacheable,
                               predicts_features, check, default_weight))
        return build

    return decorate
