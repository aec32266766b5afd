"""The ``lk`` tracker's settings (:class:`LKConfig`), shared by its OpenCV form
(:mod:`motionmae.motion.lk`) and its PyTorch forms (:mod:`motionmae.motion.batched_lk`,
:mod:`motionmae.motion.batched_tracker`, :mod:`motionmae.motion.torch_lk`): a module of its
own so that the OpenCV tracker can name its batched form without an import cycle."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LKConfig"]


@dataclass
class LKConfig:
    """Settings of the Lucas-Kanade tracker (pixels and 8-bit grey levels).

    Attributes:
        window: side of the square LK integration window, pixels (odd).
        levels: pyramid levels above the base (``maxLevel``); each halves the resolution, so
            motions up to about ``window / 2 * 2**levels`` pixels per frame are found.
        fb_threshold: maximum forward-backward error, pixels, for a step to count as tracked.
        iterations: maximum LK iterations per pyramid level.
        epsilon: LK stops when the update is below this many pixels.
        min_eigen: ``minEigThreshold`` of OpenCV: points whose window has too little texture
            (normalised minimum eigenvalue below this) get status 0 and are lost.
        predict_motion: start each step from the point's previous displacement (constant
            velocity guess) instead of zero motion; helps fast, smooth motion.
        patch: side of the appearance-check patch, pixels; ``0`` disables the check (lost points
            are then always invisible).
        ncc_threshold: minimum zero-mean normalised cross-correlation with the query patch.
        flat_std: a patch with a grey-level standard deviation below this is *flat*.
        flat_mean: two flat patches match when their mean grey levels differ by at most this.
        lost: what a lost point's track does: ``"carry"`` moves it with its neighbours, ``"hold"``
            keeps the last tracked position.
        neighbours: how many tracked points ``"carry"`` takes the median motion of.
        reacquire: each step, try to find lost points again by LK from their query frame.

    The defaults were chosen on ``benchmarks/tracking.py`` (docs/benchmarks.md, "Figures
    behind defaults"): window 13 is as accurate as 15 or 21 there and faster; OpenCV's
    default ``min_eigen=1e-4`` loses many points in weakly textured areas; ``reacquire``
    gains little occlusion accuracy for its time, so it is off.
    """

    window: int = 13
    levels: int = 3
    fb_threshold: float = 1.0
    iterations: int = 20
    epsilon: float = 0.03
    min_eigen: float = 1e-5
    predict_motion: bool = False
    patch: int = 9
    ncc_threshold: float = 0.5
    flat_std: float = 4.0
    flat_mean: float = 12.0
    lost: str = "carry"
    neighbours: int = 8
    reacquire: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"LKConfig.window: must be an odd integer >= 3, got {self.window}")
        if self.levels < 0:
            raise ValueError(f"LKConfig.levels: must be >= 0, got {self.levels}")
        if not self.fb_threshold > 0:
            raise ValueError(f"LKConfig.fb_threshold: must be > 0 pixels, "
                             f"got {self.fb_threshold}")
        if self.iterations < 1:
            raise ValueError(f"LKConfig.iterations: must be >= 1, got {self.iterations}")
        if not self.epsilon > 0:
            raise ValueError(f"LKConfig.epsilon: must be > 0, got {self.epsilon}")
        if self.min_eigen < 0:
            raise ValueError(f"LKConfig.min_eigen: must be >= 0, got {self.min_eigen}")
        if self.patch < 0:
            raise ValueError(f"LKConfig.patch: must be >= 0 (0 disables), got {self.patch}")
        if not -1.0 <= self.ncc_threshold <= 1.0:
            raise ValueError(f"LKConfig.ncc_threshold: must be in [-1, 1], "
                             f"got {self.ncc_threshold}")
        if self.lost not in ("carry", "hold"):
            raise ValueError(f"LKConfig.lost: must be 'carry' or 'hold', got {self.lost!r}")
        if self.neighbours < 1:
            raise ValueError(f"LKConfig.neighbours: must be >= 1, got {self.neighbours}")
