"""The ``torch_lk`` tracker: the ``lk`` tracker's algorithm in PyTorch, for a batch of clips on
the training device (:func:`~motionmae.motion.batched_tracker.track_lk_batched`).

Its settings are :class:`~motionmae.motion.lk.LKConfig`'s (same names, same defaults, same
meaning: ``tracking.torch_lk.window`` is the ``lk`` tracker's ``window``) plus ``device``,
where :meth:`TorchLKTracker.track_batch` runs: ``auto`` is CUDA when there is a GPU, else the
CPU. ``reacquire`` is not supported (refused when set). With ``tracking.where: step`` the
training step runs the same algorithm on the model's device whatever ``device`` says
(:mod:`~motionmae.motion.step_tracks`; ``lk`` runs it too, with its own settings).

As a :class:`~motionmae.motion.protocol.PointTracker` (loader workers, ``motionmae tracks``,
``extract-tracks``), :meth:`TorchLKTracker.track` tracks one clip on the CPU whatever
``device`` says: loader workers are forked processes, where CUDA cannot start, and one clip
gains little from a GPU. Torch is imported when a tracker is built, not with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from motionmae.environment import resolve_device
from motionmae.motion.lk import batched_lk
from motionmae.motion.lk_config import LKConfig
from motionmae.motion.protocol import validate_inputs
from motionmae.motion.registry import register_tracker

if TYPE_CHECKING:
    import torch

__all__ = ["TorchLKConfig", "TorchLKTracker"]


@dataclass
class TorchLKConfig(LKConfig):
    """:class:`~motionmae.motion.lk.LKConfig` plus the device of batched tracking.

    Attributes:
        device: where :meth:`TorchLKTracker.track_batch` runs: ``auto`` (CUDA when
            available, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
    """

    device: str = "auto"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        super().validate()
        if self.reacquire:
            raise ValueError("TorchLKConfig.reacquire: not supported by torch_lk (use the lk "
                             "tracker for it), must be false")
        try:
            resolve_device(self.device)
        except ValueError as error:
            raise ValueError(f"TorchLKConfig.device: {error}; use auto, cpu or cuda") from None


@register_tracker("torch_lk", TorchLKConfig, batched=batched_lk)
class TorchLKTracker:
    """:class:`~motionmae.motion.protocol.PointTracker` running the ``lk`` algorithm in
    PyTorch.

    ``track(frames [T,H,W,3] uint8, queries [N,3] (t, x, y))`` -> ``(tracks [T,N,2] float32
    pixels, visible [T,N] bool)`` numpy arrays, on the CPU; ``track_batch(frames
    [B,T,H,W,3], queries [B,N,3])`` -> tensors ``[B,T,N,2]``, ``[B,T,N]`` on ``device``.
    """

    name = "torch_lk"

    def __init__(self, config: TorchLKConfig | None = None):
        self.config = config or TorchLKConfig()
        self.config.validate()

    @property
    def device(self) -> torch.device:
        """The device :meth:`track_batch` runs on (``config.device`` resolved)."""
        return resolve_device(self.config.device)

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One clip on the CPU; see :func:`~motionmae.motion.batched_tracker.track_lk_batched`
        for what the tracks and visibility are."""
        import torch

        from motionmae.motion.batched_tracker import track_lk_batched

        frames, q = validate_inputs(frames, queries)
        # Copies: loader workers hand read-only frames, which torch.from_numpy warns about.
        tracks, visible = track_lk_batched(torch.tensor(frames)[None], torch.tensor(q)[None],
                                           self.config)
        return tracks[0].numpy(), visible[0].numpy()

    def track_batch(self, frames: torch.Tensor,
                    queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of clips on :attr:`device` (the frames are moved there, the results stay):
        ``frames [B,T,H,W,3]`` uint8 or float grey levels 0..255, ``queries [B,N,3]``
        ``(t, x, y)`` (keep them on the CPU to have them checked and unneeded sweeps
        skipped); returns ``(tracks [B,T,N,2] float32, visible [B,T,N] bool)``."""
        from motionmae.motion.batched_tracker import track_lk_batched

        return track_lk_batched(frames.to(self.device), queries, self.config)

    def __repr__(self) -> str:
        return f"TorchLKTracker({self.config})"
