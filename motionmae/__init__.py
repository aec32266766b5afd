"""motionmae: self-supervised video representation learning by motion-aware masked video
modeling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from motionmae.version import __version__

if TYPE_CHECKING:
    from motionmae.api import load_encoder
    from motionmae.motion import track

__all__ = ["__version__", "load_encoder", "track"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import motionmae` (and the CLI's --help) does not import torch and OpenCV.
    if name == "load_encoder":
        from motionmae.api import load_encoder

        return load_encoder
    if name == "track":
        from motionmae.motion import track

        return track
    raise AttributeError(f"module 'motionmae' has no attribute {name!r}")
