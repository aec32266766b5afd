"""Moved to :mod:`motionmae.eval.probing` (kept until its importers follow)."""

from motionmae.eval.probing import TrainingProbe

__all__ = ["TrainingProbe"]
