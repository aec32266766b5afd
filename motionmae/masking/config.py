"""The ``masking`` section: the kind, the hidden fraction, decoder masking, and one
sub-section per registered kind with settings (``masking.motion.rho``,
``masking.learned.policy``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from motionmae.config_loading import ComponentSections, check
from motionmae.masking.registry import MASKINGS


@dataclass(init=False, eq=False)
class MaskingConfig(ComponentSections):
    """Which tokens are hidden. ``ratio`` is the hidden fraction.

    ``kind``: a registered masking kind. ``motion`` (TrackMAE's motion-aware masking) splits
    spatial positions into a high- and a low-motion half by mean track displacement and
    takes a share ``motion.rho`` of the visible positions from the high half (tubed over
    time). ``cube``: MaskFeat-style space-time blocks. ``learned``: a token sampler trained
    with the autoencoder (section ``learned``).

    ``decoder_ratio`` (VideoMAE v2's decoder masking): the fraction of the hidden tokens the
    decoders do *not* reconstruct (running-cell pattern); 0 decodes them all.
    """

    REGISTRY = MASKINGS
    # Configs saved before the kinds had sections kept rho flat.
    LEGACY_KEYS: ClassVar[dict[str, str]] = {"rho": "motion.rho"}

    kind: str = "tube"
    ratio: float = 0.9
    decoder_ratio: float = 0.0

    def selected(self) -> list[str]:
        return [self.kind]

    @property
    def needs_tracks(self) -> bool:
        """Whether this kind, as configured, reads point tracks."""
        return MASKINGS.get(self.kind).needs_tracks(getattr(self, self.kind))

    def validate(self, key: str = "masking") -> None:
        check(self.kind in MASKINGS, f"{key}.kind",
              f"must be one of {MASKINGS.names()}, got {self.kind!r}")
        check(0.0 < self.ratio < 1.0, f"{key}.ratio", f"must be in (0, 1), got {self.ratio}")
        check(0.0 <= self.decoder_ratio < 1.0, f"{key}.decoder_ratio",
              f"must be in [0, 1), got {self.decoder_ratio}")
        self.validate_sections(key)
