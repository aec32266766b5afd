"""Point tracks made inside the training step (``tracking.where: step``).

The loader ships the normalised clips only; :class:`StepTracks` tracks the whole micro-batch
at once on the clips' device with the configured tracker's batched form
(:class:`~motionmae.motion.protocol.BatchedTracker`), before masking and targets, and adds
the entries :class:`~motionmae.motion.hooks.TracksHook` would have added in the workers:
``tracks [B, T, h*w, 2]`` float32 and ``track_visible [B, T, h*w]`` bool, of the same query
grid (``tracking.grid``), with the same ``tracking.frame_step`` handling.

The frames are the model's: the clip ``[B, 3, T, H, W]`` un-normalised with the data
section's mean and std and rounded, which gives back the very uint8 grey levels the workers'
tracker would see (normalising is ``x / 255`` then an affine map in float32, off by far less
than half a level): same frames, same tracks, no extra tensor shipped by the loader.

Everything runs on the clips' device under ``torch.no_grad()`` outside autocast, with no
host sync: the constants are Python numbers, the queries stay in host memory (the batched
tracker reads them there to skip the backward sweep queries at frame 0 do not need, and
copies them to the device without waiting), the skipped frames are filled with index
arithmetic made on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from motionmae.motion.config import TrackingConfig
from motionmae.motion.protocol import BatchedTracker, check_grid_settings, query_grid

__all__ = ["StepTracks", "clip_levels", "fill_skipped_frames_batched"]


def clip_levels(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised clips back to their grey levels.

    Args:
        clip: ``[B, 3, T, H, W]`` float, ``(x / 255 - mean) / std`` per channel.
        mean, std: the data section's, 3 floats each.

    Returns:
        ``[B, T, H, W, 3]`` float32 integer levels ``0..255`` (``x``, rounded), on ``clip``'s
        device.
    """
    clip = clip.float()
    channels = [clip[:, c] * (255.0 * s) + 255.0 * m
                for c, (m, s) in enumerate(zip(mean, std, strict=True))]
    return torch.stack(channels, dim=-1).round_().clamp_(0.0, 255.0)


def fill_skipped_frames_batched(tracks: torch.Tensor, visible: torch.Tensor, step: int,
                                frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~motionmae.motion.frame_step.fill_skipped_frames` for a batch, on its device.

    Args:
        tracks: ``[B, S, N, 2]`` pixels at clip frames ``0, step, 2 step, ...``,
            ``S = ceil(frames / step)``.
        visible: ``[B, S, N]`` bool.
        step: clip frames between tracked frames.
        frames: clip frames ``T``.

    Returns:
        ``(tracks [B, T, N, 2] float32, visible [B, T, N] bool)``: a skipped frame on the
        straight line between the tracked frames around it (visible when both are), frames
        past the last tracked one a copy of it.
    """
    seen = tracks.shape[1]
    if seen != -(-frames // step):
        raise ValueError(f"tracks: {seen} tracked frames, expected ceil({frames} / {step})")
    # made on the device from Python numbers: no host-to-device copy
    position = torch.arange(frames, device=tracks.device, dtype=torch.float32) / step
    before = position.floor().long().clamp(max=seen - 1)
    after = torch.where(position > before, (before + 1).clamp(max=seen - 1), before)
    frac = torch.where(after > before, position - before, 0.0)[None, :, None, None]
    first = tracks.float().index_select(1, before)
    out = first + frac * (tracks.float().index_select(1, after) - first)
    return out, visible.index_select(1, before) & visible.index_select(1, after)


class StepTracks:
    """``tracks`` and ``track_visible`` of a micro-batch's clips, in the step.

    Args:
        tracker: the batched form of the run's tracker.
        patch: the model's patch side, pixels (one query per patch).
        grid: the query points, ``patch_centres`` or ``cotracker`` (``tracking.grid``).
        frame_step: the tracker sees every ``frame_step``-th clip frame, the others are
            filled in (``tracking.frame_step``).
        mean, std: the data section's normalisation.

    ``__call__(clip [B, 3, T, H, W])`` -> ``{"tracks": [B, T, N, 2] float32, "track_visible":
    [B, T, N] bool}`` on the clip's device, ``N = (H // patch) * (W // patch)`` queries at
    clip frame 0 in token order.
    """

    def __init__(self, tracker: BatchedTracker, patch: int, grid: str = "patch_centres",
                 frame_step: int = 1, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        check_grid_settings(patch, grid, frame_step)
        self.tracker, self.patch, self.grid, self.frame_step = tracker, patch, grid, frame_step
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))
        self._queries: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def for_run(cls, tracking: TrackingConfig, patch: int, mean: Sequence[float],
                std: Sequence[float]) -> StepTracks:
        """The run's: ``tracking``'s tracker (its batched form), grid and frame step."""
        tracker = tracking.batched_tracker()
        if tracker is None:
            raise ValueError(f"tracking.tracker={tracking.tracker} has no batched form with "
                             "these settings: it cannot track in the training step")
        return cls(tracker, patch, tracking.grid, tracking.frame_step, mean, std)

    def queries(self, height: int, width: int) -> torch.Tensor:
        """``[N, 3]`` ``(t, x, y)`` float32 in host memory: the query grid at clip frame 0, in
        the frames the tracker sees (``t`` counted in them); made once per frame size."""
        key = (height, width)
        if key not in self._queries:
            q = query_grid(self.grid, height, width, self.patch).astype(np.float32)
            q[:, 0] /= self.frame_step  # frame 0 for either grid: the first tracked frame
            self._queries[key] = torch.from_numpy(q)
        return self._queries[key]

    def __call__(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        if clip.ndim != 5 or clip.shape[1] != 3:
            raise ValueError(f"clip: expected [B, 3, T, H, W], got {tuple(clip.shape)}")
        b, _, t, h, w = clip.shape
        with torch.no_grad(), torch.autocast(clip.device.type, enabled=False):
            frames = clip_levels(clip[:, :, ::self.frame_step], self.mean, self.std)
            queries = self.queries(h, w).expand(b, -1, -1)
            tracks, visible = self.tracker(frames, queries)
            if self.frame_step > 1:
                tracks, visible = fill_skipped_frames_batched(tracks, visible,
                                                              self.frame_step, t)
        return {"tracks": tracks.float(), "track_visible": visible}

    def __repr__(self) -> str:
        return (f"StepTracks(patch={self.patch}, grid={self.grid!r}, "
                f"frame_step={self.frame_step}, tracker={self.tracker!r})")
