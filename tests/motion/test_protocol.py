"""Query grids, input validation and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from motionmae.motion import (
    PointTracker,
    cotracker_grid_queries,
    grid_queries,
    make_tracker,
    patch_center_queries,
    patch_grid_queries,
    query_grid,
    track,
    validate_inputs,
)


def _frames(t: int = 4, h: int = 32, w: int = 48) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_grid_queries_cell_centres():
    q = grid_queries(224, 224, 14, t=3)
    assert q.shape == (196, 3) and q.dtype == np.float32
    assert np.all(q[:, 0] == 3)
    # cell (i, j) centre = (j + 0.5) * 16 - 0.5: the centre pixel pair of each 16 px patch
    np.testing.assert_allclose(q[:14, 1], np.arange(14) * 16 + 7.5)
    np.testing.assert_allclose(q[:14, 2], 7.5)
    np.testing.assert_allclose(q[14, 1:], [7.5, 23.5])  # row-major: query 14 is cell (1, 0)
    # non-square frame, non-integer cell size: cell centres span the frame symmetrically
    q = grid_queries(10, 30, 4)
    np.testing.assert_allclose(q[:4, 1], (np.arange(4) + 0.5) * 7.5 - 0.5)
    np.testing.assert_allclose(q[::4, 2], (np.arange(4) + 0.5) * 2.5 - 0.5)
    np.testing.assert_allclose(q[:, 1].mean(), (30 - 1) / 2)


def test_query_grids_one_point_per_patch():
    np.testing.assert_array_equal(query_grid("patch_centres", 64, 96, 16, t=2),
                                  patch_center_queries(64, 96, 16, t=2))
    q = query_grid("cotracker", 64, 96, 16, t=2)  # 4 rows x 6 columns, CoTracker's layout
    assert q.shape == (24, 3) and np.all(q[:, 0] == 2)
    np.testing.assert_allclose(q[:6, 1], np.linspace(8, 504, 6) * 95 / 511, rtol=1e-6)
    np.testing.assert_allclose(q[::6, 2], np.linspace(8, 376, 4) * 63 / 383, rtol=1e-6)
    # one point per side sits at the middle of CoTracker's resolution
    np.testing.assert_allclose(cotracker_grid_queries(32, 32, 1, 1)[0, 1:],
                               [256 * 31 / 511, 192 * 31 / 383], rtol=1e-6)
    with pytest.raises(ValueError, match="query grid must be one of"):
        query_grid("centres", 64, 64, 16)


def test_patch_queries_match_grid_and_order():
    np.testing.assert_array_equal(patch_center_queries(224, 224, 16), grid_queries(224, 224, 14))
    q = patch_grid_queries(32, 48, 16, per_side=2, t=1)
    assert q.shape == (2 * 3 * 4, 3)
    # patch 0 (top-left) then patch 1 (to its right); 2 x 2 points at sub-cell centres
    np.testing.assert_allclose(q[:4, 1:], [[3.5, 3.5], [11.5, 3.5], [3.5, 11.5], [11.5, 11.5]])
    np.testing.assert_allclose(q[4, 1:], [19.5, 3.5])
    np.testing.assert_allclose(q[3 * 4, 1:], [3.5, 19.5])  # first patch of the second row
    with pytest.raises(ValueError, match="larger than"):
        patch_grid_queries(8, 8, 16)


@pytest.mark.parametrize(
    ("frames", "queries", "message"),
    [
        (_frames().astype(np.float32), np.zeros((1, 3)), "dtype uint8"),
        (_frames()[0], np.zeros((1, 3)), "ndim 3"),
        (_frames()[..., :1], np.zeros((1, 3)), r"\[T, H, W, 3\]"),
        ([[0]], np.zeros((1, 3)), "numpy array"),
        (_frames(), np.zeros((2, 2)), r"shape \[N, 3\]"),
        (_frames(), np.zeros(3), r"shape \[N, 3\]"),
        (_frames(), np.array([[4, 1, 1]]),
         r"row 0 has frame index t=4, expected an integer in \[0, 3\]"),
        (_frames(), np.array([[0, 1, 1], [1.5, 1, 1]]), "row 1 has frame index t=1.5"),
        (_frames(), np.array([[0, 47.6, 1]]), r"row 0 point \(x=47.6, y=1\) is out of range"),
        (_frames(), np.array([[0, 1, -0.6]]), "out of range"),
        (_frames(), np.array([[0, np.nan, 1]]), "row 0 is not finite"),
        (_frames(), np.array([["a", "b", "c"]]), "real"),
    ],
)
def test_validate_inputs_errors(frames, queries, message):
    with pytest.raises(ValueError, match=message):
        validate_inputs(frames, queries)


def test_validate_inputs_accepts_edges_and_converts():
    f, q = validate_inputs(_frames(), np.array([[0, -0.5, -0.5], [3, 47.5, 31.5]], np.float64))
    assert q.dtype == np.float32 and f.flags.c_contiguous
    assert validate_inputs(_frames(), np.zeros((0, 3)))[1].shape == (0, 3)


def test_make_tracker_errors_and_protocol():
    with pytest.raises(ValueError,
                       match="unknown tracker 'sift'; valid names: cotracker, flow, lk"):
        make_tracker("sift")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['windw'\]"):
        make_tracker("lk", windw=15)
    with pytest.raises(ValueError, match=r"LKConfig.window: must be an odd integer"):
        make_tracker("lk", window=14)
    with pytest.raises(ValueError, match=r"FlowConfig.method"):
        make_tracker("flow", method="horn-schunck")
    tracker = make_tracker("flow", camera={"method": "orb"}, fb_threshold=2.0)
    assert isinstance(tracker, PointTracker)
    assert tracker.config.camera.method == "orb" and tracker.config.fb_threshold == 2.0


def test_track_convenience_empty_and_single_frame():
    frames = _frames(t=3)
    tracks, visible = track(frames, np.zeros((0, 3), np.float32))
    assert tracks.shape == (3, 0, 2) and visible.shape == (3, 0)
    q = np.array([[0, 10.0, 12.0]], np.float32)
    for name in ("lk", "flow"):
        tracks, visible = track(frames[:1], q, tracker=name)
        np.testing.assert_array_equal(tracks, [[[10.0, 12.0]]])
        assert visible.tolist() == [[True]]
    tracker = make_tracker("lk")
    assert track(frames, q, tracker=tracker)[0].shape == (3, 1, 2)
    with pytest.raises(ValueError, match="ready tracker instance"):
        track(frames, q, tracker=tracker, window=15)
