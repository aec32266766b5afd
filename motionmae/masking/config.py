"""The ``masking`` section: the kind, the hidden fraction, decoder masking, and one
sub-section per registered kind with settings (``masking.motion.rho``,
``masking.learned.policy``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from motionmae.config_loading import ComponentSections, check
from motionmae.masking.registry import MASKINGS

# VideoMAE's 0.9 was chosen at 16 x 224 x 224 with 2 x 16 x 16 tubelets (1,568 tokens). On
# smaller clips 0.75 did better on every geometry the motion suite tried (docs/benchmarks.md,
# "Motion probe suite": masking ratio at 16x112 and at the demo geometry).
PAPER_TOKENS, PAPER_RATIO, SMALL_CLIP_RATIO = 1568, 0.9, 0.75


def default_mask_ratio(num_tokens: int) -> float:
    """The hidden fraction for clips of ``num_tokens`` tokens: VideoMAE's 0.9 from its own
    1,568 tokens up, 0.75 below."""
    return PAPER_RATIO if num_tokens >= PAPER_TOKENS else SMALL_CLIP_RATIO


@dataclass(init=False, eq=False)
class MaskingConfig(ComponentSections):
    """Which tokens are hidden. ``ratio`` is the hidden fraction; null (the default) is
    resolved from the clip's token count (:func:`default_mask_ratio`) by
    ``PretrainConfig.resolve``, and the run saves the number it picked.

    ``kind``: a registered masking kind. ``motion`` (the default; TrackMAE's motion-aware
    masking: at a small budget pixel MAE's ``tube`` learns no motion) splits
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

    kind: str = "motion"
    ratio: float | None = None
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
        check(self.ratio is None or 0.0 < self.ratio < 1.0, f"{key}.ratio",
              f"must be in (0, 1) or null, got {self.ratio}")
        check(0.0 <= self.decoder_ratio < 1.0, f"{key}.decoder_ratio",
              f"must be in [0, 1), got {self.decoder_ratio}")
        self.validate_sections(key)
