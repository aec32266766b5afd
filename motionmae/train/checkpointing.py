"""Moved to :mod:`motionmae.train.save_resume` (kept until its importers follow)."""

from motionmae.train.save_resume import (
    Checkpoints,
    TrainState,
    check_resumed_model,
    stop_on_sigterm,
)

__all__ = ["Checkpoints", "TrainState", "check_resumed_model", "stop_on_sigterm"]
