"""Labels are names: a probe reads the validation labels in the training set's classes, features
files keep their class names, and features files that cannot be used are refused by name."""

import copy
import dataclasses
import logging

import numpy as np
import pytest
import torch
from torch import nn

from motionmae.data.config import DataConfig
from motionmae.data.entries import LabelError, shared_videos
from motionmae.errors import DATA
from motionmae.eval import FeatureSet, load_features, run_probe, save_features
from motionmae.eval.features import FeatureFileError, feature_origin

CLASSES = ["a", "b", "c"]


def _features(labels: list[int], classes: list[str], centres: list[int],
              source: str = "") -> FeatureSet:
    """One clip per label, placed at the centre of class ``centres[i]`` (its own, or another's
    to make a wrong answer) in a 3-d space where the classes are far apart."""
    rng = np.random.default_rng(len(labels))
    x = 10 * np.eye(3, dtype=np.float32)[centres] + rng.normal(0, 0.1, (len(labels), 3))
    return FeatureSet(x.astype(np.float32), np.asarray(labels, np.int64),
                      [f"v{i}.mp4" for i in range(len(labels))], classes, source)


@pytest.fixture
def train() -> FeatureSet:
    return _features([0, 0, 0, 1, 1, 1, 2, 2, 2], CLASSES, [0, 0, 0, 1, 1, 1, 2, 2, 2],
                     "train.npz")


@pytest.mark.parametrize("kind", ["linear", "knn"])
def test_the_same_val_clips_score_the_same_whatever_classes_the_val_set_has(train, kind):
    # Val: two clips of each class, one "b" clip looking like a "c" (wrong); 5 of 6 right.
    full = _features([0, 0, 1, 1, 2, 2], CLASSES, [0, 0, 1, 2, 2, 2], "val.npz")
    # The same b and c clips in a set without class a: it numbers its own names b=0, c=1.
    reduced = _features([0, 0, 1, 1], ["b", "c"], [1, 2, 2, 2], "val-bc.npz")
    result_full, result_reduced = run_probe(kind, train, full), run_probe(kind, train, reduced)
    assert result_full.top1 == pytest.approx(5 / 6)
    assert result_reduced.top1 == pytest.approx(3 / 4)  # renumbered by position: 1 / 4
    assert result_full.chance == result_reduced.chance == pytest.approx(1 / 3)
    assert result_full.majority == pytest.approx(1 / 3)
    assert result_reduced.majority == pytest.approx(1 / 2)


def test_a_val_class_unknown_to_train_is_refused_by_name(train):
    val = _features([0, 1], ["a", "jump"], [0, 1], "val.npz")
    with pytest.raises(LabelError, match=r"^val\.npz: class 'jump' unknown to train\.npz \(its "
                                         r"classes: a, b, c\)$") as refused:
        run_probe("linear", train, val)
    assert refused.value.exit_code == DATA
    unlabelled = _features([0, 1], CLASSES, [0, 1], "val.npz")
    unlabelled.labels[1] = -1
    with pytest.raises(LabelError, match=r"^val\.npz: 1 of 2 clips have no label"):
        run_probe("knn", train, unlabelled)


def test_features_files_keep_class_names_and_older_files_still_load(train, tmp_path, caplog):
    save_features(train, tmp_path / "train.npz")
    loaded = load_features(tmp_path / "train.npz")
    assert loaded.classes == CLASSES and loaded.source == str(tmp_path / "train.npz")
    np.testing.assert_array_equal(loaded.labels, train.labels)
    # A file from before class names were stored: integer labels, matched by number.
    np.savez(tmp_path / "old.npz", features=train.features, labels=train.labels,
             paths=np.asarray(train.paths))
    old = load_features(tmp_path / "old.npz")
    assert old.classes is None
    with caplog.at_level(logging.WARNING):
        result = run_probe("knn", loaded, old)
    assert result.top1 == 1.0
    assert f"{tmp_path / 'old.npz'} has no class names" in caplog.text


def test_features_files_that_cannot_be_used_are_refused_by_name(tmp_path):
    objects = np.empty(1, dtype=object)
    objects[0] = {"not": "numbers"}
    np.savez(tmp_path / "objects.npz", features=objects, labels=np.zeros(1, np.int64),
             paths=np.asarray(["a.mp4"]))
    with pytest.raises(FeatureFileError, match=r"objects\.npz: refused: an array of Python "
                                               "objects is never loaded"):
        load_features(tmp_path / "objects.npz")
    (tmp_path / "bytes.npz").write_bytes(np.random.default_rng(0).bytes(100))
    with pytest.raises(FeatureFileError, match=r"bytes\.npz: not a features \.npz file"):
        load_features(tmp_path / "bytes.npz")
    np.savez(tmp_path / "other.npz", tracks=np.zeros(3))
    with pytest.raises(FeatureFileError, match=r"other\.npz: no features or labels or paths "
                                               "array: not a features file"):
        load_features(tmp_path / "other.npz")


def test_a_probe_counts_val_clips_from_training_videos_under_any_path(train, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (videos / name).write_bytes(b"")
    (tmp_path / "link.mp4").symlink_to(videos / "b.mp4")
    fitted = dataclasses.replace(train, paths=[str(videos / "a.mp4"), str(videos / "b.mp4")]
                                 + [str(tmp_path / f"t{i}.mp4") for i in range(7)])
    val = _features([0, 1, 2], CLASSES, [0, 1, 2], "val.npz")
    disjoint = dataclasses.replace(val, paths=[str(videos / "c.mp4"), "x.mp4", "y.mp4"])
    assert run_probe("linear", fitted, disjoint).val_from_train == 0
    # The same files by a path with "..", by a link, and one video that is not in train.
    shared = dataclasses.replace(val, paths=[str(videos / ".." / "videos" / "a.mp4"),
                                             str(tmp_path / "link.mp4"), str(videos / "c.mp4")])
    for kind in ("linear", "knn"):
        assert run_probe(kind, fitted, shared).val_from_train == 2
    assert shared_videos(fitted.paths, shared.paths) == shared.paths[:2]


def test_features_of_one_encoder_carry_its_weights_through_a_file(tmp_path):
    torch.manual_seed(0)
    encoder = nn.Linear(3, 2)
    data = DataConfig(frames=4, stride=2, size=32)
    origin = feature_origin(encoder, data, "runs/a")
    assert origin == feature_origin(copy.deepcopy(encoder), data, "runs/copy") | {
        "checkpoint": "runs/a"}  # the same weights elsewhere: the same digest
    features = dataclasses.replace(_features([0, 1, 2], CLASSES, [0, 1, 2]), origin=origin)
    save_features(features, tmp_path / "f.npz")
    assert load_features(tmp_path / "f.npz").origin == origin
    with torch.no_grad():
        encoder.weight[0, 0] += 1e-3
    assert feature_origin(encoder, data)["weights"] != origin["weights"]
