"""The grid-cell readout of ``benchmarks/probe_pooling.py`` pools the cells it names."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from probe_pooling import grid_cells

from motionmae.tokens import TokenGrid


def test_cells_are_means_over_time_halves_and_quadrants():
    grid = TokenGrid(frames=8, height=48, width=64)  # t=4, h=3, w=4
    t, h, w = np.meshgrid(np.arange(4), np.arange(3), np.arange(4), indexing="ij")
    # One token value per axis: its t, h and w index, so every cell's mean is known.
    tokens = np.stack([t, h, w], axis=-1).reshape(1, 48, 3).astype(np.float32)
    cells = grid_cells(tokens, grid, (2, 2, 2)).reshape(2, 2, 2, 3)
    # time halves t {0,1} / {2,3}; rows {0,1} / {2} (the first cell takes the extra row);
    # columns {0,1} / {2,3}
    np.testing.assert_allclose(cells[..., 0], np.broadcast_to([[[0.5]], [[2.5]]], (2, 2, 2)))
    np.testing.assert_allclose(cells[..., 1], np.broadcast_to([[[0.5], [2.0]]], (2, 2, 2)))
    np.testing.assert_allclose(cells[..., 2], np.broadcast_to([[[0.5, 2.5]]], (2, 2, 2)))
    # one cell per axis is the mean over all tokens
    np.testing.assert_allclose(grid_cells(tokens, grid, (1, 1, 1)), tokens.mean(axis=1))
