"""The fixed (not learned) tables the model is built with: VideoMAE's sin-cos position table,
the table per axis (``model.positions = 3d``), and the tubelet embedding's temporal difference
basis. Made once, at construction; a training step only reads them."""

from __future__ import annotations

import torch

from motionmae.tokens import TokenGrid


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed 1D sin-cos table (``get_sinusoid_encoding_table``): ``[num_positions,
    dim]`` float32.

    Entry ``(p, j)`` is ``sin(p / 10000^(2*(j//2)/dim))`` for even ``j`` and ``cos(...)`` for odd
    ``j``: sines and cosines interleaved, positions counted over the flattened (t, h, w) tokens.
    Computed in float64 like the NumPy original, then rounded to float32.
    """
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    exponent = 2.0 * torch.div(torch.arange(dim), 2, rounding_mode="floor").double() / dim
    angles = position / torch.pow(10000.0, exponent)
    table = torch.empty(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


def sinusoid_position_embedding(grid: TokenGrid, dim: int, kind: str = "1d") -> torch.Tensor:
    """Fixed position embedding of every token of ``grid``: ``[L, dim]`` float32, tokens in
    (t, h, w) order.

    ``"1d"``: VideoMAE's table over the ``L = t*h*w`` flattened token indices, so VideoMAE
    checkpoints load and produce identical features. ``"3d"``: the tables of the token's t,
    h and w concatenated, ``dim - 2*k``, ``k`` and ``k`` wide with ``k = 2*(dim // 6)``
    (ModelConfig.positions says why).
    """
    if kind == "1d":
        return sinusoid_position_table(grid.num_tokens, dim)
    if kind != "3d":
        raise ValueError(f"unknown position table {kind!r}; choose '1d' or '3d'")
    side = 2 * (dim // 6)
    if side == 0:
        raise ValueError(f"a 3d position table needs dim >= 6, got {dim}")
    t, h, w = torch.meshgrid(torch.arange(grid.t), torch.arange(grid.h), torch.arange(grid.w),
                             indexing="ij")
    parts = [sinusoid_position_table(size, width)[index.reshape(-1)]
             for size, width, index in ((grid.t, dim - 2 * side, t), (grid.h, side, h),
                                        (grid.w, side, w))]
    return torch.cat(parts, dim=1)


def temporal_difference_basis(frames: int, gain: float) -> torch.Tensor:
    """``[frames, frames]`` float32 ``B`` mapping a tubelet's frames ``x`` (along time) to its
    coordinates ``B @ x``: row 0 the mean of the frames, row ``i >= 1`` ``gain *
    (x_i - x_{i-1})``. Invertible for ``gain > 0`` (a kernel ``W`` on these coordinates is
    ``W @ B`` on the frames)."""
    if frames < 1 or gain <= 0:
        raise ValueError(f"need frames >= 1 and gain > 0, got {frames} and {gain}")
    basis = torch.zeros(frames, frames)
    basis[0] = 1.0 / frames
    for i in range(1, frames):
        basis[i, i], basis[i, i - 1] = gain, -gain
    return basis
