"""Decoder-side masking (VideoMAE v2): reconstruct only part of the hidden tokens.

The decoders then run on ``V + D`` tokens instead of ``L`` (the visible tokens plus mask
tokens at the ``D`` positions they reconstruct) and the loss covers those ``D`` tokens, which
cuts the decoder's cost about in proportion. Which hidden tokens are decoded follows
VideoMAE v2's *running cell*: the spatial grid is tiled with 2x2 cells and in tubelet slice
``t`` a cell keeps its positions ``c`` (row-major in the cell) with ``(c - t) mod 4 < n``,
``n = round(4 * (1 - decoder_ratio))``; the kept positions run through the cell over time,
so every position is decoded in ``n`` of every 4 slices and the decoded tokens of
neighbouring slices do not repeat each other.

Here ``decoder_ratio`` is the fraction of the *hidden* tokens not decoded: exactly ``D = M -
round(M * decoder_ratio)`` of a clip's ``M`` hidden tokens are decoded, so every clip has the
same count (static shapes, no host sync). The hidden tokens the running cell keeps come first
and the count is made up, or cut, at random. With tube masking, ``t`` a multiple of 4 and
``4 * (1 - decoder_ratio)`` an integer, the cell gives exactly ``D`` and the selection is
VideoMAE v2's (which counts its decoder ratio over all tokens: the same fraction of the
hidden ones under tube masking).
"""

from __future__ import annotations

import torch

from motionmae.tokens import TokenGrid, uniform_noise

__all__ = ["DecoderMask", "decoded_subset", "num_decoded", "running_cell"]

CELL = 2


def num_decoded(num_masked: int, decoder_ratio: float) -> int:
    """Hidden tokens the decoders reconstruct: ``M - round(M * decoder_ratio)``, at least 1."""
    return max(1, num_masked - round(num_masked * decoder_ratio))


def running_cell(grid: TokenGrid, decoder_ratio: float) -> torch.Tensor:
    """``[L]`` bool, True where the running cell decodes the token (module docstring)."""
    area = CELL * CELL
    keep = max(1, round(area * (1.0 - decoder_ratio)))
    t = torch.arange(grid.t).view(-1, 1, 1)
    y = torch.arange(grid.h).view(1, -1, 1)
    x = torch.arange(grid.w).view(1, 1, -1)
    cell_position = (y % CELL) * CELL + x % CELL
    return ((cell_position - t) % area < keep).flatten()


def decoded_subset(
    masked_idx: torch.Tensor,
    cell: torch.Tensor,
    decoder_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The hidden tokens the decoders reconstruct.

    Args:
        masked_idx: ``[B, M]`` int64 hidden token indices (same ``M`` in every row).
        cell: ``[L]`` bool :func:`running_cell` on ``masked_idx``'s device.
        decoder_ratio: fraction of the hidden tokens not decoded, in [0, 1).
        generator: source of the random make-up (noise drawn on its device, then moved).

    Returns:
        ``[B, D]`` int64, ``D = num_decoded(M, decoder_ratio)``, a subset of each row of
        ``masked_idx``, sorted ascending.
    """
    b, m = masked_idx.shape
    # cell tokens first (key in [0, 1)), the others after (key in [1, 2)), at random within
    key = (~cell[masked_idx]).float() + uniform_noise((b, m), generator, masked_idx.device)
    pick = torch.argsort(key, dim=1)[:, : num_decoded(m, decoder_ratio)]
    return torch.gather(masked_idx, 1, pick).sort(dim=1).values


class DecoderMask:
    """``decoder_mask(masked_idx, generator)`` -> the decoded subset ``[B, D]``
    (:func:`decoded_subset`), with the running cell made once per device (a host-to-device
    copy waits for the device)."""

    def __init__(self, grid: TokenGrid, decoder_ratio: float) -> None:
        self.grid = grid
        self.decoder_ratio = decoder_ratio
        self._cells: dict[torch.device, torch.Tensor] = {}

    def __call__(
        self, masked_idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        device = masked_idx.device
        if device not in self._cells:
            self._cells[device] = running_cell(self.grid, self.decoder_ratio).to(device)
        return decoded_subset(masked_idx, self._cells[device], self.decoder_ratio, generator)

    def __repr__(self) -> str:
        return f"DecoderMask(running cell, decoder_ratio={self.decoder_ratio})"
