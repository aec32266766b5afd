"""VideoDataset, collate_samples and build_loader."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from motionmae.config import DataConfig
from motionmae.data import dataset as dataset_module
from motionmae.data.dataset import VideoDataset, collate_samples
from motionmae.data.hooks import HookInput, SampleHook
from motionmae.data.lists import VideoEntry, VideoList, read_video_list
from motionmae.data.loader import build_loader, set_epoch
from motionmae.data.synthetic import SyntheticDataset
from motionmae.data.transforms import CropBox, Geometry, denormalize, transform_points
from motionmae.data.video_info import VideoReadError


def _config(**overrides: object) -> DataConfig:
    values: dict = {"frames": 8, "stride": 4, "size": 32}
    values.update(overrides)
    return DataConfig(**values)


@pytest.fixture()
def footage_list(footage: Path) -> VideoList:
    names = ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"]
    return VideoList([VideoEntry(footage / n, i) for i, n in enumerate(names)])


def test_sample_contents(footage_list: VideoList) -> None:
    ds = VideoDataset(footage_list, _config(), train=True, seed=0)
    sample = ds[1]
    assert sample["clip"].shape == (3, 8, 32, 32) and sample["clip"].dtype == torch.float32
    for key, value in (("label", 1), ("index", 1), ("bad_videos", 0)):
        assert sample[key].dtype == torch.int64 and sample[key].ndim == 0
        assert sample[key].item() == value
    assert sample["frame_indices"].shape == (8,)
    assert (sample["frame_indices"].diff() == 4).all()
    assert sample["crop_box"].shape == (4,) and sample["flipped"].dtype == torch.bool


def test_same_seed_epoch_index_give_the_same_clip(footage_list: VideoList) -> None:
    a = VideoDataset(footage_list, _config(), train=True, seed=5)
    b = VideoDataset(footage_list, _config(), train=True, seed=5)
    for i in range(3):
        torch.testing.assert_close(a[i]["clip"], b[i]["clip"], rtol=0, atol=0)
    before = [a[i] for i in range(3)]
    a.set_epoch(1)
    after = [a[i] for i in range(3)]
    assert any(not torch.equal(x["crop_box"], y["crop_box"]) or
               not torch.equal(x["frame_indices"], y["frame_indices"])
               for x, y in zip(before, after, strict=True))
    b.set_epoch(1)
    torch.testing.assert_close(b[0]["clip"], after[0]["clip"], rtol=0, atol=0)
    c = VideoDataset(footage_list, _config(), train=True, seed=6)
    assert not torch.equal(c[0]["clip"], before[0]["clip"])


def test_num_sample_yields_distinct_clips_from_one_decode(
        footage_list: VideoList, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[np.ndarray] = []
    original = dataset_module.VideoReader.read

    def counting_read(self, indices, size=None, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(np.asarray(indices))
        return original(self, indices, size, **kwargs)

    monkeypatch.setattr(dataset_module.VideoReader, "read", counting_read)
    ds = VideoDataset(footage_list, _config(num_sample=3), train=True, seed=0)
    samples = ds[0]
    assert isinstance(samples, list) and len(samples) == 3
    assert len(calls) == 1  # one decode visit for all three clips
    union = set(calls[0].tolist())
    for s in samples:
        assert set(s["frame_indices"].tolist()) <= union
    assert len({tuple(s["crop_box"].tolist()) + tuple(s["frame_indices"].tolist())
                for s in samples}) == 3
    batch = collate_samples([samples, ds[1]])
    assert batch["clip"].shape == (6, 3, 8, 32, 32)
    assert batch["index"].tolist() == [0, 0, 0, 1, 1, 1]


def test_eval_views(footage_list: VideoList) -> None:
    ds = VideoDataset(footage_list, _config(test_clips=2, test_crops=3), train=False)
    assert ds.num_views == 6
    samples = ds[0]
    assert len(samples) == 6
    assert [s["view"].item() for s in samples] == list(range(6))
    views = ds.views(0)
    assert views["clip"].shape == (6, 3, 8, 32, 32)
    assert views["label"].ndim == 0 and views["view"].tolist() == list(range(6))
    # Two temporal clips x three spatial crops (left, centre, right), no flip.
    assert len({tuple(v.tolist()) for v in views["frame_indices"]}) == 2
    xs = views["crop_box"][:3, 0].tolist()
    assert xs[0] == 0 and xs[0] < xs[1] < xs[2]
    assert not views["flipped"].any()
    # Deterministic: no randomness in evaluation.
    torch.testing.assert_close(ds.views(0)["clip"], views["clip"], rtol=0, atol=0)


def test_hooks_see_the_frames_the_model_sees(synthetic: SyntheticDataset) -> None:
    seen: list[np.ndarray] = []

    def hook(frames: np.ndarray, entry: VideoEntry) -> dict[str, torch.Tensor]:
        assert frames.dtype == np.uint8 and frames.shape == (8, 32, 32, 3)
        assert not frames.flags.writeable
        seen.append(frames.copy())
        return {"mean_intensity": torch.tensor(float(frames.mean()))}

    config = synthetic.data_config(frames=8, size=32)
    ds = VideoDataset(read_video_list(synthetic.train_list), config, True, 0, [hook])
    sample = ds[4]
    assert "mean_intensity" in sample
    frames = denormalize(sample["clip"], config.mean, config.std).permute(1, 2, 3, 0) * 255
    np.testing.assert_allclose(frames.numpy(), seen[0], atol=1e-3)

    def clashing(frames: np.ndarray, entry: VideoEntry) -> dict[str, torch.Tensor]:
        return {"clip": torch.zeros(1)}

    with pytest.raises(ValueError, match="reserved"):
        VideoDataset(read_video_list(synthetic.train_list), config, True, 0, [clashing])[0]


class _DenseHook:
    """A :class:`SampleHook` asking for every frame of the span."""

    def __init__(self, dense: bool) -> None:
        self.needs_dense_frames = dense
        self.seen: list[HookInput] = []

    def __call__(self, sample: HookInput) -> dict[str, torch.Tensor]:
        self.seen.append(sample)
        return {"span": torch.tensor(0 if sample.dense_frames is None
                                     else len(sample.dense_frames))}


@pytest.mark.parametrize("dense", [True, False])
def test_rich_hooks_get_indices_geometry_and_dense_frames(synthetic: SyntheticDataset,
                                                          dense: bool) -> None:
    hook = _DenseHook(dense)
    assert isinstance(hook, SampleHook)
    config = synthetic.data_config(frames=4, size=32, num_sample=2)  # stride 4 over 16
    ds = VideoDataset(read_video_list(synthetic.train_list), config, True, 0, [hook])
    samples = ds[2]
    assert len(hook.seen) == 2
    for sample, seen in zip(samples, hook.seen, strict=True):
        np.testing.assert_array_equal(seen.frame_indices, sample["frame_indices"].numpy())
        assert isinstance(seen.geometry, Geometry) and seen.geometry.size == 32
        assert seen.frames.shape == (4, 32, 32, 3) and not seen.frames.flags.writeable
        if not dense:
            assert seen.dense_frames is None and sample["span"].item() == 0
            continue
        first, last = int(seen.frame_indices[0]), int(seen.frame_indices[-1])
        assert seen.dense_frames.shape == (last - first + 1, 32, 32, 3)
        np.testing.assert_array_equal(seen.dense_frames[seen.frame_indices - first],
                                      seen.frames)
        assert sample["span"].item() == last - first + 1


def test_crop_box_maps_source_points(footage: Path) -> None:
    """``crop_box`` (source pixels) + ``transform_points`` locate a source point in the clip."""
    videos = VideoList([VideoEntry(footage / "bikes.mp4", None)])
    ds = VideoDataset(videos, _config(size=64, frames=2), train=True, seed=1,
                      decode_size=100)
    sample = ds[0]
    box = CropBox(*sample["crop_box"].tolist())
    # The box's edges (pixel-area coordinates: centre of column i is x = i) land on the
    # clip's edges, -0.5 and 63.5, whichever side the flip puts them on.
    edges = np.array([[box.x - 0.5, box.y - 0.5], [box.x + box.width - 0.5,
                                                   box.y + box.height - 0.5]])
    mapped = transform_points(edges, box, 64, bool(sample["flipped"]))
    np.testing.assert_allclose(np.sort(mapped, axis=0), [[-0.5, -0.5], [63.5, 63.5]],
                               atol=1e-6)
    # Source-pixel box: bikes is 640x272, decoded at 100 px short side.
    assert box.x >= 0 and box.x + box.width <= 640 + 1e-3
    assert box.y >= 0 and box.y + box.height <= 272 + 1e-3
    assert box.height >= 0.66 * 272 - 3


def _bad_list(tmp_path: Path, footage: Path) -> VideoList:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    good = footage / "carphone_pristine.mp4"
    return VideoList([VideoEntry(good, 0), VideoEntry(empty, 1), VideoEntry(text, 2),
                      VideoEntry(good, 3)])


def test_on_error_raise_names_the_file(tmp_path: Path, footage: Path) -> None:
    ds = VideoDataset(_bad_list(tmp_path, footage), _config(on_error="raise"), train=True)
    with pytest.raises(VideoReadError, match=r"video 2 of the list: .*empty\.mp4: empty file"):
        ds[1]


def test_on_error_skip_substitutes_and_counts(tmp_path: Path, footage: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    videos = _bad_list(tmp_path, footage)
    ds = VideoDataset(videos, _config(on_error="skip"), train=True, seed=0)
    dataset_module._REPORTED_BAD.clear()
    with caplog.at_level(logging.WARNING, logger="motionmae.data.dataset"):
        for _ in range(3):
            for i in (1, 2):
                sample = ds[i]
                assert sample["bad_videos"].item() >= 1
                assert sample["index"].item() in (0, 3)
                assert sample["label"].item() == sample["index"].item()
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("empty.mp4" in m for m in warnings) == 1  # once per process
    assert sum("text.mp4" in m for m in warnings) == 1
    assert any("empty file (0 bytes)" in m for m in warnings)
    # Deterministic replacement.
    again = VideoDataset(videos, _config(on_error="skip"), train=True, seed=0)
    torch.testing.assert_close(again[1]["clip"], ds[1]["clip"], rtol=0, atol=0)
    assert ds[0]["bad_videos"].item() == 0


def test_loader_with_two_workers(synthetic: SyntheticDataset) -> None:
    config = synthetic.data_config(frames=8, size=32, num_sample=2)
    videos = read_video_list(synthetic.train_list)
    ds = VideoDataset(videos, config, train=True, seed=0)
    loader = build_loader(ds, batch_size=3, workers=2, shuffle=True, seed=0)
    assert loader.persistent_workers
    epochs = []
    for epoch in range(2):
        set_epoch(loader, epoch)
        batches = list(loader)
        assert len(batches) == len(videos) // 3
        first = batches[0]
        assert first["clip"].shape == (6, 3, 8, 32, 32)
        assert first["label"].shape == (6,) and first["label"].dtype == torch.int64
        assert first["bad_videos"].sum().item() == 0
        epochs.append(batches)
    order = [b["index"].tolist() for b in epochs[0]]
    assert order != [b["index"].tolist() for b in epochs[1]]  # reshuffled per epoch
    # Workers saw the epoch: their samples equal in-process samples of that epoch.
    reference = VideoDataset(videos, config, train=True, seed=0)
    for epoch in range(2):
        reference.set_epoch(epoch)
        index = epochs[epoch][0]["index"][0].item()
        torch.testing.assert_close(epochs[epoch][0]["clip"][:2],
                                   collate_samples([reference[index]])["clip"],
                                   rtol=0, atol=0)
    del loader


def test_loader_reraises_the_named_error(tmp_path: Path, footage: Path) -> None:
    ds = VideoDataset(_bad_list(tmp_path, footage), _config(on_error="raise"), train=True)
    loader = build_loader(ds, batch_size=4, workers=1, shuffle=False, seed=0)
    batches = iter(loader)
    with pytest.raises(VideoReadError, match=r"empty\.mp4: empty file \(0 bytes\)"):
        next(batches)
    # The error's traceback holds the iterator in a reference cycle; torch's shutdown of an
    # iterator freed by the cycle collector waits out a 5 s join timeout. Collect the cycle
    # while ``batches`` still holds the iterator, then drop it: a prompt, orderly shutdown.
    gc.collect()
    del batches, loader
