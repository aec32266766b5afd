"""Fine-tuning augmentations: clip RandAugment, random erasing, and their place in the dataset."""

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from motionmae.config import ConfigError, ErasingConfig, RandAugmentConfig
from motionmae.data import VideoDataset, read_video_list
from motionmae.data.config import RANDAUGMENT_OPS
from motionmae.data.erasing import RandomErasing, erase_box
from motionmae.data.randaugment import AugmentOp, RandAugment, apply_ops


def _image(seed: int = 0, height: int = 24, width: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, 3)) * 180 + 30).astype(np.uint8)
    image[5:15, 4:12] = [200, 40, 90]
    return image


def _one(image: np.ndarray, op: AugmentOp) -> np.ndarray:
    return apply_ops(torch.from_numpy(image)[None], [op])[0].numpy().astype(int)


@pytest.mark.parametrize("name", RANDAUGMENT_OPS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_every_op_treats_every_frame_the_same(name, sign):
    # A still clip must stay still: identical frames in, identical frames out.
    frames = torch.from_numpy(np.stack([_image()] * 3))
    out = apply_ops(frames, [AugmentOp(name, 8.0, sign)])
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_statistics_come_from_the_whole_clip():
    # Frame 1 spans 0..100, frame 2 spans 0..200: one stretch (x 255/200) for both, so frame
    # 1 does not get stretched to 255 on its own (which would make the clip flicker).
    ramp = np.linspace(0, 1, 20 * 24).reshape(24, 20, 1).repeat(3, axis=2)
    frames = torch.from_numpy(np.stack([ramp * 100, ramp * 200]).round().astype(np.uint8))
    out = apply_ops(frames, [AugmentOp("auto_contrast", 5.0)])
    assert int(out[1].max()) == 255
    assert int(out[0].max()) == round(100 * 255 / 200)


@pytest.mark.parametrize("name, reference", [
    ("auto_contrast", lambda im: ImageOps.autocontrast(im)),
    ("equalize", lambda im: ImageOps.equalize(im)),
    ("invert", lambda im: ImageOps.invert(im)),
    ("posterize", lambda im: ImageOps.posterize(im, 2)),  # level 5: 4 - int(2) bits
    ("solarize", lambda im: ImageOps.solarize(im, 128)),  # level 5: 256 - 128
    ("color", lambda im: ImageEnhance.Color(im).enhance(1.45)),  # level 5: 1 + 0.9 * 0.5
    ("contrast", lambda im: ImageEnhance.Contrast(im).enhance(1.45)),
    ("brightness", lambda im: ImageEnhance.Brightness(im).enhance(1.45)),
    ("sharpness", lambda im: ImageEnhance.Sharpness(im).enhance(1.45)),
])
def test_one_frame_matches_pil_within_one_level(name, reference):
    image = _image(1)
    expected = np.asarray(reference(Image.fromarray(image))).astype(int)
    assert np.abs(_one(image, AugmentOp(name, 5.0)) - expected).max() <= 1


def test_translate_moves_content_by_the_level_and_fills_grey():
    image = _image(2)
    out = _one(image, AugmentOp("translate_x", 10.0))  # 0.45 * 20 px = 9 px to the left
    np.testing.assert_array_equal(out[:, :11], image[:, 9:])
    assert (out[:, 11:] == 128).all()
    down = _one(image, AugmentOp("translate_y", 10.0, -1.0))  # 0.45 * 24 = 10.8 px down
    # row y samples y - 10.8: 0.8 of row y - 11 and 0.2 of row y - 10 (bilinear)
    expected = 0.8 * image[:-11].astype(float) + 0.2 * image[1:-10]
    np.testing.assert_allclose(down[11:], expected, atol=0.51)
    assert (down[:10] == 128).all()


def test_zero_level_geometry_is_identity():
    image = _image(3)
    for name in ("rotate", "shear_x", "shear_y", "translate_x"):
        np.testing.assert_array_equal(_one(image, AugmentOp(name, 0.0)), image)


def test_plan_is_reproducible_and_respects_config():
    augment = RandAugment(RandAugmentConfig(num_ops=4, magnitude=7, magnitude_std=0.5,
                                            ops=["rotate", "invert"]))
    plans = [augment.plan(np.random.default_rng(5)) for _ in range(2)]
    assert plans[0] == plans[1]
    many = [op for seed in range(200) for op in augment.plan(np.random.default_rng(seed))]
    assert {op.name for op in many} == {"rotate", "invert"}
    # each of the 4 draws is kept with probability 0.5
    assert 1.6 < len(many) / 200 < 2.4
    assert all(0 <= op.level <= 10 for op in many)
    assert {op.sign for op in many if op.name == "rotate"} == {1.0, -1.0}
    assert {op.sign for op in many if op.name == "invert"} == {1.0}
    none = RandAugment(RandAugmentConfig(num_ops=0))
    frames = torch.from_numpy(_image()[None])
    assert none(frames, np.random.default_rng(0)) is frames


def test_unknown_op_is_a_config_error():
    with pytest.raises(ConfigError, match=r"randaugment.ops: unknown operation 'blur'"):
        RandAugment(RandAugmentConfig(ops=["blur"]))


def test_erase_box_area_and_aspect_follow_config():
    cfg = ErasingConfig(min_area=0.05, max_area=0.3, min_aspect=0.5)
    for seed in range(100):
        y, x, h, w = erase_box(64, 48, cfg, np.random.default_rng(seed))
        assert y >= 0 and y + h <= 64 and x >= 0 and x + w <= 48
        # rounding to whole pixels moves area and aspect a little
        assert 0.04 <= h * w / (64 * 48) <= 0.32
        assert 0.5 / 1.2 <= w / h <= 2.0 * 1.2


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """[T, H, W] bool: pixels that differ."""
    return (before != after).any(dim=-1)


def test_clip_erasing_is_one_box_with_the_same_noise_in_every_frame():
    frames = torch.zeros(4, 32, 32, 3, dtype=torch.uint8)
    out = RandomErasing(ErasingConfig(prob=1.0))(frames, np.random.default_rng(0))
    changed = _changed(frames, out)
    assert changed.any()
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[3])
    rows, cols = torch.nonzero(changed[0], as_tuple=True)
    box_area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert changed[0].sum() >= 0.95 * box_area  # a filled box (noise may hit 0 rarely)
    assert frames.sum() == 0  # input untouched


def test_frame_erasing_draws_each_frame_independently():
    frames = torch.zeros(6, 32, 32, 3, dtype=torch.uint8)
    out = RandomErasing(ErasingConfig(prob=1.0, mode="frame"))(frames, np.random.default_rng(1))
    masks = _changed(frames, out)
    assert all(m.any() for m in masks)
    assert len({tuple(torch.nonzero(m).min(0).values.tolist()) for m in masks}) > 1


def test_erasing_probability_zero_and_rate():
    frames = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    assert RandomErasing(ErasingConfig(prob=0.0))(frames, np.random.default_rng(0)) is frames
    erasing = RandomErasing(ErasingConfig(prob=0.25))
    erased = sum(erasing(frames, np.random.default_rng(s)) is not frames for s in range(400))
    assert abs(erased / 400 - 0.25) < 0.07


def test_dataset_applies_clip_transforms_to_training_clips_only(tiny_videos):
    videos = read_video_list(tiny_videos.train_list)
    data = tiny_videos.data_config(frames=4, size=32, workers=0)
    calls = []

    def invert(frames, rng):
        calls.append(rng.random())
        return 255 - frames

    plain = VideoDataset(videos, data, train=True, seed=0)[0]["clip"]
    inverted = VideoDataset(videos, data, train=True, seed=0, clip_transforms=[invert])[0]["clip"]
    mean, std = torch.tensor(data.mean).view(3, 1, 1, 1), torch.tensor(data.std).view(3, 1, 1, 1)
    # invert in pixel space: x' = 1 - x, so normalised values map as (1 - 2 * mean) / std - c
    torch.testing.assert_close(inverted, (1 - 2 * mean) / std - plain, atol=1e-5, rtol=0)
    assert len(calls) == 1
    evaluation = VideoDataset(videos, data, train=False, clip_transforms=[invert])[0]["clip"]
    assert len(calls) == 1 and evaluation.shape == plain.shape
    assert math.isfinite(float(evaluation.sum()))
