"""Frame-index sampling."""

from __future__ import annotations

import numpy as np
import pytest

from motionmae.data.transforms import (
    clip_indices,
    clip_span,
    eval_clips_indices,
    multi_clip_indices,
)


def test_training_clip_has_stride_and_stays_inside() -> None:
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(2000):
        idx = clip_indices(100, 8, 4, rng)
        assert idx.dtype == np.int64 and idx.shape == (8,)
        assert (np.diff(idx) == 4).all()
        assert idx[0] >= 0 and idx[-1] < 100
        starts.add(int(idx[0]))
    assert starts == set(range(100 - clip_span(8, 4) + 1))  # every start is reachable


def test_training_is_a_function_of_the_generator() -> None:
    a = clip_indices(300, 16, 4, np.random.default_rng(7))
    b = clip_indices(300, 16, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_short_video_is_padded_with_its_last_frame() -> None:
    idx = clip_indices(10, 8, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(idx, [0, 2, 4, 6, 8, 9, 9, 9])
    np.testing.assert_array_equal(clip_indices(1, 4, 3, None), [0, 0, 0, 0])


def test_eval_clips_are_evenly_spaced() -> None:
    clips = eval_clips_indices(100, 4, 2, num_clips=3)  # span 7, room 93
    np.testing.assert_array_equal(clips[:, 0], [0, 46, 93])
    assert clips[-1, -1] == 99
    centre = clip_indices(100, 4, 2, None)  # one clip: centred
    np.testing.assert_array_equal(centre, [46, 48, 50, 52])
    np.testing.assert_array_equal(clip_indices(100, 4, 2, np.random.default_rng(0), 2, 3),
                                  clips[2])  # clip_index wins over rng
    with pytest.raises(ValueError, match="clip_index"):
        clip_indices(100, 4, 2, None, clip_index=3, num_clips=3)


def test_multi_clip_draws_independent_clips() -> None:
    clips = multi_clip_indices(250, 16, 4, np.random.default_rng(1), 4)
    assert clips.shape == (4, 16)
    assert len({int(c[0]) for c in clips}) > 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        clip_indices(0, 4, 1, None)
    with pytest.raises(ValueError, match="stride"):
        clip_indices(10, 4, 0, None)
