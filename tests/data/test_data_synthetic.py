"""The synthetic motion dataset: files, balance, no single-frame shortcut, reuse."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from motionmae.data.lists import read_video_list
from motionmae.data.synthetic import (
    CLASSES,
    SyntheticDataset,
    make_synthetic_dataset,
    render_clip,
    render_sample,
    sample_appearance,
    sample_motion,
)
from motionmae.data.video_reader import probe_video, read_frames


def test_files_lists_and_balance(synthetic: SyntheticDataset) -> None:
    assert synthetic.classes == list(CLASSES) == sorted(CLASSES)
    assert len(CLASSES) == 9
    for path, per_class in ((synthetic.train_list, 2), (synthetic.val_list, 1)):
        videos = read_video_list(path)
        assert videos.classes == synthetic.classes
        assert Counter(e.label for e in videos.entries) == dict.fromkeys(range(9), per_class)
    entry = read_video_list(synthetic.train_list).entries[0]
    info = probe_video(entry.path)
    assert (info.num_frames, info.width, info.height) == (16, 64, 64)
    assert read_frames(entry.path, range(16)).shape == (16, 64, 64, 3)


def test_frame_zero_is_the_same_whatever_the_class() -> None:
    appearance = sample_appearance(np.random.default_rng(11), 64)
    firsts = [render_clip(appearance, sample_motion(name, np.random.default_rng(2), 64), 8)[0]
              for name in CLASSES]
    for first in firsts[1:]:
        np.testing.assert_array_equal(first, firsts[0])


def test_frame_zero_does_not_reveal_the_class() -> None:
    """Leave-one-out 1-NN on frame-0 thumbnails stays at chance (1/9) on 270 clips."""
    thumbs, labels = [], []
    for index in range(270):
        frame0, name = render_sample(seed=0, split="train", index=index, frames=1, size=64)
        thumbs.append(frame0[0, ::4, ::4].astype(np.float32).ravel())
        labels.append(CLASSES.index(name))
    x, y = np.stack(thumbs), np.array(labels)
    distances = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    accuracy = float((y[distances.argmin(1)] == y).mean())
    assert accuracy < 2.0 / 9.0, accuracy


def test_the_class_is_in_the_motion(synthetic: SyntheticDataset) -> None:
    """Still clips do not change (beyond coding noise); every other class does."""
    for entry in read_video_list(synthetic.train_list).entries:
        frames = read_frames(entry.path, [0, 15]).astype(np.float32)
        changed = (np.abs(frames[1] - frames[0]).max(-1) > 24).mean()  # fraction of pixels
        if CLASSES[entry.label] == "still":
            assert changed < 0.001, (entry.path, changed)
        else:
            assert changed > 0.004, (entry.path, changed)


def test_data_config_turns_flip_off(synthetic: SyntheticDataset) -> None:
    config = synthetic.data_config(frames=8)
    config.validate()
    assert config.flip is False
    assert (config.frames, config.stride, config.size) == (8, 2, 64)
    assert config.train == str(synthetic.train_list)
    with pytest.raises(ValueError, match="flip"):
        synthetic.data_config(flip=True)


def test_generation_is_idempotent_and_atomic(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    first = make_synthetic_dataset(root, num_train=4, num_val=2, frames=4, size=32)
    videos = read_video_list(first.train_list).entries
    stamps = [os.stat(e.path).st_mtime_ns for e in videos]
    again = make_synthetic_dataset(root, num_train=4, num_val=2, frames=4, size=32)
    assert again == first
    assert [os.stat(e.path).st_mtime_ns for e in videos] == stamps  # reused, not rewritten
    # A missing file or a missing manifest (killed run) means "incomplete": regenerate.
    videos[1].path.unlink()
    make_synthetic_dataset(root, num_train=4, num_val=2, frames=4, size=32)
    assert videos[1].path.is_file()
    content = videos[0].path.read_bytes()
    (root / "manifest.json").unlink()
    make_synthetic_dataset(root, num_train=4, num_val=2, frames=4, size=32)
    assert videos[0].path.read_bytes() == content  # seeded: the same bytes again
    assert not list(root.rglob("*.tmp*"))
    # Other parameters: regenerated.
    make_synthetic_dataset(root, num_train=4, num_val=2, frames=4, size=32, seed=1)
    assert videos[0].path.read_bytes() != content
    with pytest.raises(ValueError, match="even"):
        make_synthetic_dataset(root, num_train=1, num_val=1, size=33)


def test_every_object_moves_the_same_way() -> None:
    """Each object of a multi-object clip is drawn and shifted by the class motion: the
    clip equals the composite of single-object clips over the shared background."""
    appearance = sample_appearance(np.random.default_rng(5), 64, objects=(3, 3))
    assert len(appearance.sprites) == len(appearance.positions) == 3
    motion = sample_motion("right", np.random.default_rng(1), 64)
    clip = render_clip(appearance, motion, 6).astype(np.int16)
    background = render_clip(dataclasses.replace(appearance, sprites=(), positions=()),
                             motion, 6).astype(np.int16)
    for k in range(3):
        alone = dataclasses.replace(appearance, sprites=appearance.sprites[k:k + 1],
                                    positions=appearance.positions[k:k + 1])
        single = render_clip(alone, motion, 6).astype(np.int16)
        covered = np.abs(single - background).max(-1) > 40  # where object k is, per frame
        assert covered[0].any() and covered[-1].any()
        # The object's footprint moved right by the class shift (on the torus).
        shift = round(motion.shift[0])
        overlap = (np.roll(covered[0], shift, axis=1) & covered[-1]).sum() / covered[-1].sum()
        assert overlap > 0.6, (k, overlap)
    assert (np.abs(clip - background).max(-1) > 40).any(axis=(1, 2)).all()
