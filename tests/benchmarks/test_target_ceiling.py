"""The descriptors of ``benchmarks/target_ceiling.py`` hold the motion they are named for."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from motion_descriptors import flow_histograms
from target_ceiling import patch_means, track_steps, tubelet_motion

from motionmae.motion import make_tracker
from motionmae.motion.protocol import query_grid


def test_a_uniform_rightward_field_votes_only_its_bin_in_every_cell():
    flow = np.zeros((6, 7, 7, 2), np.float32)
    flow[..., 0] = 4.0  # 4 px per step to the right: bin 0 (centred on +x)
    hist = flow_histograms(flow, grid=4, time_cells=3, bins=8).reshape(3, 4, 4, 9)
    np.testing.assert_allclose(hist[..., 0], 2.0)  # sqrt of the magnitude
    np.testing.assert_allclose(hist[..., 1:], 0.0)


def test_still_points_vote_the_no_motion_bin_and_time_cells_keep_their_order():
    flow = np.zeros((4, 4, 4, 2), np.float32)
    flow[2:, ..., 1] = -1.0  # up (y grows downwards) in the second half only
    hist = flow_histograms(flow, grid=2, time_cells=2, bins=4).reshape(2, 2, 2, 5)
    np.testing.assert_allclose(hist[0, ..., 4], 1.0)  # first half: all still
    np.testing.assert_allclose(hist[0, ..., :4], 0.0)
    np.testing.assert_allclose(hist[1, ..., 3], 1.0)  # -y is bin 3 of 4 (270 degrees)
    np.testing.assert_allclose(hist[1].sum(axis=-1), 1.0)
    with pytest.raises(ValueError, match="at least one"):
        flow_histograms(flow[:0])


def test_patch_means_average_each_patch():
    flow = np.zeros((2, 32, 48, 2), np.float32)
    flow[:, :16, 16:32, 0] = 3.0  # one patch moves
    means = patch_means(flow, 16)
    assert means.shape == (2, 2, 3, 2)
    expected = np.zeros((2, 3))
    expected[0, 1] = 3.0
    np.testing.assert_allclose(means[0, ..., 0], expected)
    np.testing.assert_allclose(means[..., 1], 0.0)


def test_the_real_tracker_gives_a_translated_texture_its_displacement():
    rng = np.random.default_rng(0)
    texture = (rng.random((120, 140)) * 255).astype(np.uint8)
    texture = np.repeat(np.repeat(texture, 2, axis=0), 2, axis=1)  # smooth enough for LK
    shift = 2  # px per frame, to the right: frame k shows the texture moved by 2k
    frames = np.stack([np.repeat(texture[20:132, 60 - shift * k:172 - shift * k, None], 3, 2)
                       for k in range(8)])
    tracker = make_tracker("lk")
    tracks, visible = tracker.track(frames, query_grid("patch_centres", 112, 112, 16))
    inside = query_grid("patch_centres", 112, 112, 16)[:, 1] < 96  # the last column leaves
    assert visible[:, inside].all()
    steps = track_steps(tracks, visible, 7, 7)[:, :, :6]
    assert steps.shape == (7, 7, 6, 2)
    np.testing.assert_allclose(steps[..., 0], shift, atol=0.05)
    np.testing.assert_allclose(steps[..., 1], 0.0, atol=0.05)
    # 4 tubelets of 2 frames; the windows are frames 0-2, 2-4, 4-6 and 5-7 (the last one
    # ends at the clip's last frame), two frame steps each
    motion = tubelet_motion(tracks, 8, 2)
    assert motion.shape == (4, 49, 2)
    np.testing.assert_allclose(motion[:, inside, 0], 2 * shift, atol=0.1)
    np.testing.assert_allclose(motion[:, inside, 1], 0.0, atol=0.1)
    # A point lost at either end of a step votes nothing.
    lost = visible.copy()
    lost[3, 0] = False
    masked = track_steps(tracks, lost, 7, 7)
    np.testing.assert_array_equal(masked[2:4, 0, 0], 0.0)
    np.testing.assert_allclose(masked[1, 0, 0, 0], shift, atol=0.05)
