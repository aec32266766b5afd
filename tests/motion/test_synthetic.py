"""The known-motion clip generators: rendered frames agree with their ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from motionmae.motion.synthetic import (
    add_occluder,
    occluder_texture,
    random_motion_clip,
    rotation_clip,
    translation_clip,
    zoom_clip,
)


def test_integer_translation_moves_pixels_exactly(bunny):
    clip = translation_clip(bunny, 4, (64, 80), (2.0, -1.0))
    assert clip.frames.shape == (4, 64, 80, 3) and clip.frames.dtype == np.uint8
    # content at (x, y) in frame 0 is at (x + 2t, y - t) in frame t
    np.testing.assert_array_equal(clip.frames[3, 10:40, 20:70], clip.frames[0, 13:43, 14:64])
    q = np.array([[0, 5.0, 1.2], [2, 30.0, 20.0]], np.float32)
    tracks, visible = clip.ground_truth(q)
    np.testing.assert_allclose(tracks[:, 0], [[5 + 2 * t, 1.2 - t] for t in range(4)], atol=1e-5)
    np.testing.assert_allclose(tracks[0, 1], [26.0, 22.0], atol=1e-5)
    # y = 1.2 - t leaves the frame (y < -0.5) at t = 2
    assert visible[:, 0].tolist() == [True, True, False, False]


def test_rotation_and_zoom_ground_truth_follows_content(bunny):
    rng = np.random.default_rng(1)
    for clip in (rotation_clip(bunny, 6, (96, 96), 2.0), zoom_clip(bunny, 6, (96, 96), 1.03)):
        q = np.stack([np.zeros(20), rng.uniform(30, 66, 20), rng.uniform(30, 66, 20)], 1)
        tracks, visible = clip.ground_truth(q)
        assert visible.all()
        # grey values at the true positions agree (bilinear sampling of smooth-ish content)
        g0 = clip.frames[0].mean(-1)
        g5 = clip.frames[5].mean(-1)
        p0 = np.rint(tracks[0]).astype(int)
        p5 = np.rint(tracks[5]).astype(int)
        wrong = np.rint(tracks[0] + 6).astype(int)
        err_true = np.abs(g0[p0[:, 1], p0[:, 0]] - g5[p5[:, 1], p5[:, 0]]).mean()
        err_wrong = np.abs(g0[p0[:, 1], p0[:, 0]] - g5[wrong[:, 1], wrong[:, 0]]).mean()
        assert err_true < 0.5 * err_wrong


def test_occluder_boxes_and_flags(bunny):
    rng = np.random.default_rng(0)
    clip = translation_clip(bunny, 5, (64, 64), (0.0, 0.0))
    tex = occluder_texture(bunny, 16, rng)
    occ = add_occluder(clip, tex, (-16, 10), (10, 0))
    np.testing.assert_array_equal(occ.occluder_boxes[2], [4, 10, 20, 26])
    np.testing.assert_array_equal(occ.frames[2, 10:26, 4:20], tex)
    np.testing.assert_array_equal(occ.frames[2, 30:, :], clip.frames[2, 30:, :])
    q = np.array([[0, 10.0, 15.0], [0, 10.0, 40.0]], np.float32)
    _, visible = occ.ground_truth(q)
    # x = 10 is covered when x0 - 0.5 <= 10 < x0 + 15.5, i.e. only by x0 = 4 (t = 2)
    assert visible[:, 0].tolist() == [True, True, False, True, True]
    assert visible[:, 1].all()


def test_refuses_motion_outside_image(bunny):
    with pytest.raises(ValueError, match="outside the 640x360 image"):
        translation_clip(bunny, 16, (224, 224), (20.0, 0.0))
    with pytest.raises(ValueError, match="kind"):
        random_motion_clip(bunny, np.random.default_rng(0), "shear")


def test_random_clip_is_reproducible(bunny):
    a = random_motion_clip(bunny, np.random.default_rng(3), "rotation", occluder=True,
                           noise_std=2.0)
    b = random_motion_clip(bunny, np.random.default_rng(3), "rotation", occluder=True,
                           noise_std=2.0)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.affines, b.affines)
