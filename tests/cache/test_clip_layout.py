"""Which clips of a video the caches hold, and the training clips drawn from them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from motionmae.cache import CacheConfig, ClipLayout
from motionmae.data.config import DataConfig


def test_starts_are_evenly_spaced_and_fit() -> None:
    assert ClipLayout(16, 4, 4).starts(250).tolist() == [0, 63, 126, 189]  # room 189
    assert ClipLayout(16, 4, 1).starts(250).tolist() == [94]  # centred
    assert ClipLayout(16, 4, 4).starts(30).tolist() == [0]  # shorter than a span
    assert ClipLayout(16, 4, 4).starts(62).tolist() == [0, 1]  # duplicates dropped
    clips = ClipLayout(16, 4, 2).indices(30)
    assert clips.shape == (1, 16) and clips.max() == 29  # clamped like the dataset pads


def test_sample_draws_every_cached_clip_and_pickles() -> None:
    layout = ClipLayout(16, 4, 4)
    rng = np.random.default_rng(0)
    rows = {tuple(r) for r in layout.indices(250)}
    sampler = pickle.loads(pickle.dumps(layout.sample))  # the loader workers' clip sampler
    assert {tuple(sampler(250, rng=rng)) for _ in range(40)} == rows


@pytest.mark.parametrize("field", ["frames", "stride", "clips"])
def test_a_layout_needs_positive_counts(field: str) -> None:
    with pytest.raises(ValueError, match=rf"ClipLayout\.{field}: must be an integer >= 1"):
        ClipLayout(**{field: 0})


def test_a_run_caches_the_clips_it_trains_on() -> None:
    layout = CacheConfig(clips=3).layout(DataConfig(frames=8, stride=2))
    assert layout == ClipLayout(frames=8, stride=2, clips=3)
