"""Multi-view testing, classification metrics, saved predictions, label alignment."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from motionmae.data import VideoDataset, VideoEntry, VideoList, build_loader, read_video_list
from motionmae.data.entries import LabelError
from motionmae.errors import DATA
from motionmae.eval import (
    align_labels,
    average_view_probs,
    classification_metrics,
    evaluate_videos,
    extract_features,
    predict_views,
    save_evaluation,
)
from motionmae.eval.multiview import views_per_item


class LogitsInClip(nn.Module):
    """A rigged model: the logits are written in the clip (``clip[:, 0, 0, 0, :K]``)."""

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return clip[:, 0, 0, 0, :3]


def _batch(view_probs: list[list[float]], labels: list[int], views: int) -> dict:
    rows = len(view_probs)
    clip = torch.zeros(rows, 3, 2, 4, 4)
    clip[:, 0, 0, 0, :3] = torch.tensor(view_probs).log()
    return {"clip": clip, "label": torch.tensor(labels).repeat_interleave(views),
            "index": torch.arange(rows // views).repeat_interleave(views),
            "view": torch.arange(views).repeat(rows // views)}


def test_softmax_is_averaged_over_views_not_voted():
    # Views of video 0 vote 0, 1, 0 by argmax, but the averaged softmax says class 1.
    video0 = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.45, 0.4, 0.15]]
    video1 = [[0.1, 0.1, 0.8]] * 3
    batch = _batch(video0 + video1, [1, 2], views=3)
    result = predict_views(LogitsInClip(), [batch])
    assert result.views == 3
    np.testing.assert_allclose(result.probs[0], np.mean(video0, axis=0), atol=1e-6)
    np.testing.assert_allclose(result.probs[1], [0.1, 0.1, 0.8], atol=1e-6)
    assert result.probs.argmax(1).tolist() == [1, 2]
    assert result.labels.tolist() == [1, 2] and result.indices.tolist() == [0, 1]


def test_average_view_probs_shapes_and_errors():
    logits = torch.randn(6, 4)
    probs = average_view_probs(logits, 2)
    assert probs.shape == (3, 4)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="not a multiple of 4 views"):
        average_view_probs(logits, 4)
    with pytest.raises(ValueError, match="does not hold whole videos"):
        views_per_item({"view": torch.tensor([0, 1, 2, 0, 1])})


class FrameMeans(nn.Module):
    """Logits = the mean of each frame: a different answer for every temporal view."""

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.mean(dim=(1, 3, 4)) * 10


def test_views_from_the_dataset_are_grouped_per_video(tiny_videos):
    videos = read_video_list(tiny_videos.val_list)
    data = tiny_videos.data_config(frames=4, size=32, workers=0, test_clips=3, test_crops=2)
    dataset = VideoDataset(videos, data, train=False)
    loader = build_loader(dataset, batch_size=2, workers=0, shuffle=False, seed=0,
                          drop_last=False)
    result = predict_views(FrameMeans(), loader)
    assert result.views == 6 and result.probs.shape == (9, 4)
    for i in (0, 4, 8):
        views = dataset.views(i)["clip"]  # [6, C, T, H, W]
        expected = FrameMeans()(views).softmax(-1).mean(0)
        np.testing.assert_allclose(result.probs[i], expected.numpy(), atol=1e-6)
    assert result.indices.tolist() == list(range(9))
    assert result.labels.tolist() == [e.label for e in videos.entries]


def test_features_average_views_into_one_row_per_video(tiny_videos):
    videos = read_video_list(tiny_videos.val_list)
    data = tiny_videos.data_config(frames=4, size=32, workers=0, test_clips=2)
    dataset = VideoDataset(videos, data, train=False)
    loader = build_loader(dataset, batch_size=4, workers=0, shuffle=False, seed=0,
                          drop_last=False)

    class FrameTokens(nn.Module):
        def forward(self, clip):  # tokens [B, L=4, D=3]: frame means per channel
            return clip.mean(dim=(3, 4)).transpose(1, 2)

    encoder = FrameTokens()
    paths = [str(e.path) for e in videos.entries]
    features = extract_features(encoder, loader, paths, pool=False)
    assert features.features.shape == (9, 4, 3) and features.paths == paths
    expected = encoder(dataset.views(5)["clip"]).mean(0)
    np.testing.assert_allclose(features.features[5], expected.numpy(), atol=1e-6)


def test_metrics_known_answer():
    probs = np.array([
        [0.7, 0.2, 0.1, 0.0],   # label 0: right
        [0.1, 0.6, 0.3, 0.0],   # label 2: wrong (top-2 right)
        [0.2, 0.3, 0.5, 0.0],   # label 2: right
        [0.5, 0.4, 0.1, 0.0],   # label 1: wrong
    ])
    labels = np.array([0, 2, 2, 1])
    metrics = classification_metrics(probs, labels)
    assert metrics.top1 == 0.5 and metrics.top5 == 1.0
    assert metrics.per_class == [1.0, 0.0, 0.5, None]
    assert metrics.mean_class == pytest.approx(0.5)
    assert metrics.confusion == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        classification_metrics(probs, np.array([0, 1, 2, 4]))


class Constant(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, clip):
        return self.logits.expand(len(clip), -1)


def test_evaluate_and_save_predictions(tiny_videos, tmp_path):
    videos = read_video_list(tiny_videos.val_list)
    data = tiny_videos.data_config(frames=4, size=32, workers=0, test_clips=2)
    logits = [0.0] * 9
    logits[3] = 5.0  # always "rotate_ccw"
    evaluation = evaluate_videos(Constant(logits), videos, data, videos.classes, batch_size=4)
    assert evaluation.metrics.top1 == pytest.approx(1 / 9)
    assert evaluation.metrics.per_class[3] == 1.0 and evaluation.metrics.per_class[0] == 0.0
    json_path, csv_path = save_evaluation(evaluation, tmp_path / "out" / "val.json",
                                          {"checkpoint": "x"})
    assert (json_path, csv_path) == (tmp_path / "out" / "val.json", tmp_path / "out" / "val.csv")
    document = json.loads(json_path.read_text())
    assert document["checkpoint"] == "x" and document["views"] == {"clips": 2, "crops": 1}
    assert document["metrics"]["top1"] == pytest.approx(1 / 9)
    first = document["predictions"][0]
    assert first["path"] == str(videos.entries[0].path)
    assert first["prediction_name"] == "rotate_ccw" and first["label_name"] == "down"
    assert first["top"][0] == 3 and len(first["top"]) == 5 and not first["correct"]
    assert sum(first["probs"]) == pytest.approx(1.0, abs=1e-5)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 9 and rows[3]["correct"] == "1" and rows[0]["correct"] == "0"
    assert rows[3]["prediction_name"] == "rotate_ccw" and rows[3]["top5"].startswith("3 ")


def test_unlabelled_list_gets_predictions_only(tiny_videos, tmp_path):
    labelled = read_video_list(tiny_videos.val_list)
    videos = VideoList([VideoEntry(e.path) for e in labelled.entries[:3]])
    data = tiny_videos.data_config(frames=4, size=32, workers=0)
    evaluation = evaluate_videos(Constant([1.0, 0.0]), videos, data)
    assert evaluation.metrics is None
    json_path, csv_path = save_evaluation(evaluation, tmp_path / "preds")
    assert json_path.name == "preds.json" and csv_path.name == "preds.csv"
    assert json.loads(json_path.read_text())["predictions"][2]["correct"] is None


def test_align_labels_maps_names_to_the_model_classes(tmp_path, caplog):
    model_classes = ["a", "b", "c"]
    listing = tmp_path / "val.txt"
    listing.write_text("x.mp4 c\ny.mp4 a\n")
    videos = read_video_list(listing)
    assert videos.classes == ["a", "c"]  # the list's own numbering: c = 1
    aligned = align_labels(videos, model_classes, 3, "val.txt", "run/ft")
    assert [e.label for e in aligned.entries] == [2, 0]
    assert aligned.classes == model_classes
    listing.write_text("x.mp4 d\ny.mp4 a\n")
    with pytest.raises(LabelError, match=r"^val.txt: class 'd' unknown to run/ft "
                                         r"\(its classes: a, b, c\)$") as refused:
        align_labels(read_video_list(listing), model_classes, 3, "val.txt", "run/ft")
    assert refused.value.exit_code == DATA
    numbers = VideoList([VideoEntry(Path("x.mp4"), 3), VideoEntry(Path("y.mp4"), 0)])
    with pytest.raises(LabelError, match=r"^n.txt: label 3 unknown to run/ft \(its classes: "
                                         r"0, 1, 2\)$"):
        align_labels(numbers, None, 3, "n.txt", "run/ft")
    # A model without class names: the list's own numbering, said in a warning.
    with caplog.at_level("WARNING"):
        fallback = align_labels(videos, None, 3, "val.txt", "run/ft")
    assert [e.label for e in fallback.entries] == [1, 0]
    assert "run/ft records no class names: the labels of val.txt are matched to it by " \
        "number" in caplog.text
