"""Position embeddings of foreign checkpoints: recognise VideoMAE's fixed sinusoid table, find
the (t, h, w) layout of a saved table, and resample learned tables to another token grid.

VideoMAE's default table is fixed (a function of the token count only), so a checkpoint with it
is moved to another grid by regenerating the table, which :class:`VideoEncoder` does by
construction. Learned tables (``use_learnable_pos_emb``) are resampled trilinearly over
``(t, h, w)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from motionmae.interop.common import InteropError
from motionmae.models.tables import sinusoid_position_table

Layout = tuple[int, int, int]


def is_sinusoid_table(pos: torch.Tensor, atol: float = 1e-4) -> bool:
    """Whether ``pos [N, D]`` is VideoMAE's fixed 1D sin-cos table for ``N`` positions."""
    table = sinusoid_position_table(pos.shape[0], pos.shape[1])
    return bool(torch.allclose(pos.float(), table, atol=atol, rtol=0))


def infer_layout(num_tokens: int, t_hint: int) -> Layout:
    """Factor ``num_tokens`` as ``t * s * s`` (square frames, ``s > 1``), preferring ``t`` near
    ``t_hint``.

    Args:
        num_tokens: rows of a saved position table.
        t_hint: the expected number of tubelet slices (e.g. 8 for 16 frames, tubelet 2).

    Returns:
        ``(t, h, w)`` with ``h == w``.

    Raises:
        InteropError: no such factorisation (pass the source frames and size explicitly).
    """
    candidates = sorted(
        (t for t in range(1, num_tokens + 1) if num_tokens % t == 0),
        key=lambda t: (abs(t - t_hint), t),
    )
    for t in candidates:
        side = math.isqrt(num_tokens // t)
        if side > 1 and side * side * t == num_tokens:
            return t, side, side
    raise InteropError(
        f"cannot factor a position table of {num_tokens} tokens into t x s x s; pass the "
        "checkpoint's frames and frame size (source_frames=, source_size=)"
    )


def interpolate_positions(pos: torch.Tensor, source: Layout, target: Layout) -> torch.Tensor:
    """Resample a learned position table from one token layout to another.

    Args:
        pos: ``[N, D]`` with ``N = prod(source)``, rows in (t, h, w) row-major order.
        source: ``(t, h, w)`` of ``pos``.
        target: ``(t, h, w)`` wanted.

    Returns:
        ``[prod(target), D]`` float32: trilinear interpolation (``align_corners=False``, i.e.
        token centres scaled, edges clamped); ``pos`` unchanged when the layouts agree.
    """
    if pos.shape[0] != math.prod(source):
        raise InteropError(f"position table has {pos.shape[0]} rows, layout {source} needs "
                           f"{math.prod(source)}")
    if tuple(source) == tuple(target):
        return pos.float().clone()
    grid = pos.float().T.reshape(1, pos.shape[1], *source)  # [1, D, t, h, w]
    out = F.interpolate(grid, size=tuple(target), mode="trilinear", align_corners=False)
    return out.reshape(pos.shape[1], -1).T.contiguous()
