"""The ``targets`` section: which targets a run reconstructs (``names``) and one sub-section
per registered target (``targets.tracks.norm``), its config dataclass from the registry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from motionmae.config_loading import ComponentSections, check
from motionmae.targets.registry import TARGETS


@dataclass(init=False, eq=False)
class TargetsConfig(ComponentSections):
    """The reconstruction targets: ``names`` selects, each sub-section configures one."""

    REGISTRY = TARGETS

    # TrackMAE's pixels + tracks: pixels alone learn no motion at a small budget (issue 21).
    names: list[str] = field(default_factory=lambda: ["pixel", "tracks"])
    # Targets also scored on the tokens the encoder sees, at visible_weight times their
    # weight: the encoder's own tokens must then say what they hold (issue 21).
    visible: list[str] = field(default_factory=list)
    visible_weight: float = 1.0

    def selected(self) -> list[str]:
        return list(self.names)

    def loss_weight(self, name: str) -> float:
        """Target ``name``'s loss weight: its section's ``weight``, or when that is null the
        target's default next to this run's targets (tracks: 0.25 next to a target that
        predicts features, a teacher; else 1)."""
        return TARGETS.get(name).loss_weight(getattr(self, name),
                                             [TARGETS.get(other) for other in self.names])

    def section_to_build(self, name: str) -> Any:
        """Target ``name``'s section as its builder gets it: a null ``weight`` replaced by
        :meth:`loss_weight`."""
        section = getattr(self, name)
        if getattr(section, "weight", 0.0) is None:
            section = dataclasses.replace(section, weight=self.loss_weight(name))
        return section

    @property
    def needs_tracks(self) -> bool:
        """Whether a selected target reads point tracks."""
        return any(TARGETS.get(name).needs_tracks for name in self.names)

    @property
    def tracks_per_tubelet(self) -> bool:
        """Whether the tracks target re-seeds its points at every tubelet
        (``tracks.queries: every_tubelet``): the loader workers then track each window."""
        return "tracks" in self.names and self.tracks.queries == "every_tubelet"

    @property
    def tracked_points_per_side(self) -> int | None:
        """Points per patch side the loader workers track for the tracks target
        (``tracks.points: tracked``: its ``upsample``), or None."""
        if "tracks" in self.names and self.tracks.points == "tracked":
            return self.tracks.upsample
        return None

    @property
    def tracks_in_workers(self) -> bool:
        """Whether the tracks target reads what only the loader workers' hook makes (points
        re-seeded at every tubelet, or tracked sub-patch points)."""
        return self.tracks_per_tubelet or self.tracked_points_per_side is not None

    @property
    def cacheable(self) -> bool:
        """Whether a selected target can read from the offline cache."""
        return any(TARGETS.get(name).cacheable for name in self.names)

    def validate(self, key: str = "targets") -> None:
        check(len(self.names) >= 1, f"{key}.names", "needs at least one target")
        for name in self.names:
            check(name in TARGETS, f"{key}.names",
                  f"unknown target {name!r}; known: {TARGETS.names()}")
        check(len(set(self.names)) == len(self.names), f"{key}.names",
              f"has duplicates: {self.names}")
        for name in self.visible:
            check(name in self.names, f"{key}.visible",
                  f"{name!r} is not among {key}.names {self.names}")
        check(self.visible_weight >= 0, f"{key}.visible_weight",
              f"must be >= 0, got {self.visible_weight}")
        self.validate_sections(key)
