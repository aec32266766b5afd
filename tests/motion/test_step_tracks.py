"""Tracks made in the training step (``tracking.where: step``, :mod:`motionmae.motion.
step_tracks`): from the normalised clips the step holds, the tracks the loader workers make
from the uint8 frames, with the same query grid and frame step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionmae.config import IMAGENET_MEAN, IMAGENET_STD
from motionmae.data import normalize
from motionmae.motion import make_tracker, query_grid
from motionmae.motion.config import TrackingConfig
from motionmae.motion.frame_step import fill_skipped_frames, track_every
from motionmae.motion.step_tracks import StepTracks, clip_levels, fill_skipped_frames_batched
from motionmae.motion.synthetic import translation_clip

SIZE, PATCH, FRAMES = 64, 16, 8
VELOCITIES = ((1.0, -2.0), (2.0, 1.0))


def _clips(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` clips -> the normalised batch ``[B, 3, T, H, W]`` the step
    holds (the dataset's own normalisation)."""
    return torch.stack([normalize(f, IMAGENET_MEAN, IMAGENET_STD) for f in frames])


def _step_tracks(**tracking) -> StepTracks:
    cfg = TrackingConfig(**tracking)
    return StepTracks.for_run(cfg, PATCH, IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture(scope="module")
def translated(bunny_full, grass_origin):
    """Two clips of real grass texture translating at known velocities (px per frame)."""
    return [translation_clip(bunny_full, FRAMES, (SIZE, SIZE), v, origin=grass_origin).frames
            for v in VELOCITIES]


def test_un_normalising_gives_back_the_uint8_levels():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    levels = clip_levels(_clips(list(frames)), IMAGENET_MEAN, IMAGENET_STD)
    assert levels.shape == (2, 3, 8, 8, 3) and levels.dtype == torch.float32
    assert torch.equal(levels, torch.from_numpy(frames).float())  # every level, exactly


def test_tracks_follow_a_translated_texture(translated):
    out = _step_tracks(tracker="lk")(_clips(translated))
    tracks, visible = out["tracks"], out["track_visible"]
    n = (SIZE // PATCH) ** 2
    assert tracks.shape == (2, FRAMES, n, 2) and tracks.dtype == torch.float32
    assert visible.shape == (2, FRAMES, n) and visible.dtype == torch.bool
    # every track starts at its patch centre, in token order
    centres = torch.from_numpy(query_grid("patch_centres", SIZE, SIZE, PATCH)[:, 1:])
    assert torch.equal(tracks[:, 0], centres.expand(2, -1, -1))
    for clip, velocity in enumerate(VELOCITIES):
        # known answer: frame t is frame 0 shifted by t * velocity
        shift = torch.arange(FRAMES)[:, None, None] * torch.tensor(velocity)
        error = (tracks[clip] - tracks[clip, :1] - shift).norm(dim=-1)
        inside = visible[clip]
        assert inside[-1].float().mean() > 0.5  # the points still in the frame
        # measured 0.008 / 0.006 px (median), 0.37 / 0.16 px (90th percentile): LK's own
        # accuracy on this texture; x and y swapped, or a frame off, would be pixels off
        assert error[inside].median() < 0.05
        assert np.percentile(error[inside].numpy(), 90) < 0.6


@pytest.mark.parametrize("grid", ["patch_centres", "cotracker"])
@pytest.mark.parametrize("frame_step", [1, 2])
def test_the_step_tracks_what_the_workers_track(translated, grid, frame_step):
    """Same frames (the step un-normalises the clip), same queries, same frame step: the
    tracks of the worker path (:func:`track_every` of the configured tracker on the uint8
    frames, as :class:`TracksHook` calls it)."""
    out = _step_tracks(tracker="lk", grid=grid, frame_step=frame_step)(_clips(translated))
    queries = query_grid(grid, SIZE, SIZE, PATCH)
    for tracker, tolerance in (("torch_lk", 1e-4), ("lk", 0.02)):  # the same algorithm
        for clip, frames in enumerate(translated):
            ref, ref_visible = track_every(make_tracker(tracker), frames, queries, frame_step)
            visible = out["track_visible"][clip].numpy()
            error = np.linalg.norm(out["tracks"][clip].numpy() - ref, axis=-1)
            if tracker == "torch_lk":  # the worker's torch_lk: equal
                np.testing.assert_array_equal(visible, ref_visible)
                assert error.max() < tolerance
            else:  # OpenCV's: equal up to its fixed-point rounding (about 0.001 px)
                assert np.mean(visible == ref_visible) > 0.99
                assert np.median(error[visible & ref_visible]) < tolerance


def test_filling_skipped_frames_matches_the_workers():
    rng = np.random.default_rng(3)
    for frames, step in ((16, 2), (16, 3), (7, 4), (5, 1)):
        seen = -(-frames // step)
        tracks = rng.normal(size=(2, seen, 5, 2)).astype(np.float32) * 10
        visible = rng.random((2, seen, 5)) > 0.3
        out, out_visible = fill_skipped_frames_batched(torch.from_numpy(tracks),
                                                       torch.from_numpy(visible), step, frames)
        for clip in range(2):
            ref, ref_visible = fill_skipped_frames(tracks[clip], visible[clip], step, frames)
            np.testing.assert_allclose(out[clip].numpy(), ref, atol=1e-5, rtol=0)
            np.testing.assert_array_equal(out_visible[clip].numpy(), ref_visible)
    with pytest.raises(ValueError, match=r"tracks: 3 tracked frames, expected ceil\(8 / 2\)"):
        fill_skipped_frames_batched(torch.zeros(1, 3, 1, 2), torch.ones(1, 3, 1, dtype=bool),
                                    2, 8)


def test_runs_outside_autocast_and_without_gradients(translated):
    clip = _clips(translated).requires_grad_()
    step = _step_tracks(tracker="torch_lk")
    plain = step(clip.detach())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = step(clip)
    assert mixed["tracks"].dtype == torch.float32 and not mixed["tracks"].requires_grad
    assert torch.equal(mixed["tracks"], plain["tracks"])
    assert torch.equal(mixed["track_visible"], plain["track_visible"])


def test_a_tracker_without_a_batched_form_is_refused():
    with pytest.raises(ValueError, match=r"tracking\.tracker=flow has no batched form"):
        _step_tracks(tracker="flow")
    with pytest.raises(ValueError, match=r"expected \[B, 3, T, H, W\], got \(3, 4, 8, 8\)"):
        _step_tracks(tracker="lk")(torch.zeros(3, 4, 8, 8))
