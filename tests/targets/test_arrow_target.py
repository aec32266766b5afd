"""The arrow-of-time pretext: clips played backward by the loader (``data.reverse``) and the
``arrow`` target (:mod:`motionmae.targets.arrow`): the reversed clip is the forward clip's
frames in reverse, a real tracker sees its motion reversed, the target's known values, the
rules that refuse what cannot work, and a short pretraining run."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from short_runs import two_step_records

from motionmae.config import DataConfig, FinetuneConfig, PretrainConfig, load_config
from motionmae.config_loading import ConfigError
from motionmae.data.dataset import VideoDataset
from motionmae.data.hooks import HookInput
from motionmae.data.lists import VideoEntry, VideoList
from motionmae.data.video_writer import write_video
from motionmae.motion.lk import track_lk
from motionmae.motion.synthetic import translation_clip
from motionmae.targets import ArrowTarget, ArrowTargetConfig, clip_direction
from motionmae.tokens import TokenGrid

VELOCITY = (1.5, -1.0)  # px per source frame, right and up


class RecordingHook:
    """Keeps what the loader hands its hooks: frames and frame indices."""

    needs_dense_frames = False

    def __call__(self, sample: HookInput) -> dict[str, torch.Tensor]:
        return {"seen": torch.from_numpy(sample.frames.copy()),
                "seen_indices": torch.from_numpy(sample.frame_indices.copy())}


class DenseHook(RecordingHook):
    needs_dense_frames = True


@pytest.fixture(scope="module")
def translating_video(tmp_path_factory) -> VideoList:
    """A real H.264 file: a texture translating at ``VELOCITY`` for 40 frames, 64 px."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((240, 240, 3)).astype(np.float32), (0, 0), 2.0)
    texture = ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)
    frames = translation_clip(texture, 40, (64, 64), VELOCITY).frames
    path = tmp_path_factory.mktemp("arrow") / "translating.mp4"
    write_video(path, frames)
    return VideoList([VideoEntry(path, None)])


def _dataset(videos: VideoList, reverse: float, train: bool = True, hooks=()) -> VideoDataset:
    # One crop, no flip: the geometry does not depend on the generator's draws.
    cfg = DataConfig(frames=8, stride=2, size=64, scales=(1.0,), flip=False, reverse=reverse)
    return VideoDataset(videos, cfg, train=train, seed=5, sample_hooks=hooks)


def test_a_reversed_clip_is_the_forward_clip_in_reverse(translating_video):
    forward = _dataset(translating_video, 0.0, hooks=[RecordingHook()])[0]
    backward = _dataset(translating_video, 1.0, hooks=[RecordingHook()])[0]
    assert (np.diff(forward["frame_indices"].numpy()) == 2).all()
    torch.testing.assert_close(backward["frame_indices"], forward["frame_indices"].flip(0))
    torch.testing.assert_close(backward["clip"], forward["clip"].flip(1))
    # The hooks see the frames the model sees, in the same order.
    torch.testing.assert_close(backward["seen"], forward["seen"].flip(0))
    torch.testing.assert_close(backward["seen_indices"], backward["frame_indices"])


def test_a_real_tracker_sees_the_motion_of_a_reversed_clip_reversed(translating_video):
    queries = np.array([[0, x, y] for x in (24.0, 32.0, 40.0) for y in (24.0, 32.0, 40.0)])
    for reverse, sign in ((0.0, 1.0), (1.0, -1.0)):
        frames = _dataset(translating_video, reverse, hooks=[RecordingHook()])[0]["seen"]
        tracks, visible = track_lk(frames.numpy(), queries)
        assert visible.all()
        step = np.diff(tracks, axis=0).mean(axis=(0, 1))  # px per clip frame (stride 2)
        np.testing.assert_allclose(step, sign * 2 * np.array(VELOCITY), atol=0.1)


def test_half_the_training_clips_play_backward_and_evaluation_never(translating_video):
    dataset = _dataset(translating_video, 0.5)
    directions = []
    for epoch in range(40):
        dataset.set_epoch(epoch)
        directions.append(clip_direction(dataset[0]["frame_indices"][None]).item())
    assert 10 <= directions.count(1.0) <= 30
    assert directions.count(1.0) + directions.count(-1.0) == 40
    evaluation = _dataset(translating_video, 1.0, train=False)[0]
    assert (np.diff(evaluation["frame_indices"].numpy()) > 0).all()


def test_the_target_is_the_clip_direction_at_every_token():
    grid = TokenGrid(frames=8, height=32, width=32)
    indices = torch.tensor([[0, 2, 4, 6, 8, 10, 12, 14], [21, 18, 15, 12, 9, 6, 3, 0]])
    values, weight = ArrowTarget(ArrowTargetConfig(), grid)({"frame_indices": indices})
    assert weight is None and values.shape == (2, grid.num_tokens, 1)
    assert (values[0] == -1).all() and (values[1] == 1).all()
    # A padded clip (its last frame repeated) that plays forward is forward.
    padded = torch.tensor([[5, 6, 7, 7, 7, 7, 7, 7]])
    assert clip_direction(padded).item() == -1.0


def test_errors_name_what_is_wrong(translating_video):
    grid = TokenGrid(frames=8, height=32, width=32)
    with pytest.raises(KeyError, match="frame_indices"):
        ArrowTarget(ArrowTargetConfig(), grid)({"clip": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"expected \[B, T\] with T >= 2"):
        clip_direction(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ConfigError, match=r"data\.reverse: the arrow target needs some clips "
                                          r"played backward .* \(got 0\.0\)"):
        load_config(PretrainConfig, overrides=["targets.names=[pixel,arrow]"])
    with pytest.raises(ConfigError, match=r"data\.reverse: .* \(got 1\.0\)"):
        load_config(PretrainConfig, overrides=["targets.names=[pixel,arrow]", "data.reverse=1"])
    with pytest.raises(ConfigError, match=r"data\.reverse: must be a probability in \[0, 1\]"):
        load_config(PretrainConfig, overrides=["data.reverse=1.5"])
    with pytest.raises(ConfigError, match=r"data\.reverse: the track cache \(cache\.path\) "
                                          r"holds the tracks of clips played forward"):
        load_config(PretrainConfig, overrides=["targets.names=[pixel,tracks,arrow]",
                                               "data.reverse=0.5", "cache.path=somewhere"])
    with pytest.raises(ConfigError, match=r"data\.reverse: fine-tuning plays every clip "
                                          r"forward"):
        load_config(FinetuneConfig, overrides=["data.reverse=0.5"])
    with pytest.raises(ConfigError, match=r"data\.reverse: the m3traj target reads every "
                                          r"source frame of a clip forward"):
        load_config(PretrainConfig, overrides=["targets.names=[hog,m3traj]",
                                               "data.reverse=0.5"])
    with pytest.raises(ConfigError, match=r"data\.reverse: clips played backward are not "
                                          r"supported with a target that reads every source"):
        _dataset(translating_video, 0.5, hooks=[DenseHook()])
    _dataset(translating_video, 0.5, train=False, hooks=[DenseHook()])  # evaluation: forward


def test_two_pretraining_steps_with_pixel_tracks_and_arrow(tmp_path: Path):
    steps = two_step_records(tmp_path, "arrow",
                             ["targets.names=[pixel,tracks,arrow]", "data.reverse=0.5"])
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert math.isfinite(record["loss/arrow"]) and record["trivial/arrow"] >= 0
