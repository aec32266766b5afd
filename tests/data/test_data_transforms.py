"""Geometric augmentation, point mapping, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionmae.config import IMAGENET_MEAN, IMAGENET_STD
from motionmae.data.transforms import (
    CropBox,
    Geometry,
    apply_geometry,
    denormalize,
    eval_geometries,
    multiscale_crop_box,
    normalize,
    sample_train_geometry,
    transform_points,
)

SCALES = (1.0, 0.875, 0.75, 0.66)


def _frames(t: int = 4, h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_multiscale_crop_boxes_follow_videomae() -> None:
    rng = np.random.default_rng(0)
    sides = {int(120 * s) for s in SCALES}
    seen = set()
    for _ in range(500):
        box = multiscale_crop_box(120, 160, SCALES, rng)
        assert box.width in sides and box.height in sides
        i = sorted(sides, reverse=True).index(box.width)
        j = sorted(sides, reverse=True).index(box.height)
        assert abs(i - j) <= 1  # max distortion 1
        assert 0 <= box.x <= 160 - box.width and 0 <= box.y <= 120 - box.height
        # Fixed offsets: multiples of a quarter of the free space.
        assert box.x % max((160 - box.width) // 4, 1) == 0
        seen.add((box.x, box.y, box.width, box.height))
    assert len(seen) > 30


def test_train_geometry_shapes_and_flip_option() -> None:
    rng = np.random.default_rng(1)
    frames = _frames()
    geometries = [sample_train_geometry(120, 160, 64, SCALES, True, rng) for _ in range(50)]
    assert {g.flip for g in geometries} == {True, False}
    out = apply_geometry(frames, geometries[0])
    assert out.shape == (4, 64, 64, 3) and out.dtype == torch.uint8
    assert not any(sample_train_geometry(120, 160, 64, SCALES, False, rng).flip
                   for _ in range(50))


def test_flip_mirrors_the_frames() -> None:
    frames = _frames(h=64, w=64)
    box = CropBox(0, 0, 64, 64)
    plain = apply_geometry(frames, Geometry(box, 64, flip=False))
    mirrored = apply_geometry(frames, Geometry(box, 64, flip=True))
    np.testing.assert_array_equal(plain.numpy(), frames)  # identity crop, no resampling
    np.testing.assert_array_equal(mirrored.numpy(), frames[:, :, ::-1])


def test_eval_geometries_are_short_side_squares() -> None:
    (centre,) = eval_geometries(64, 112, 64, 1)
    assert centre.box == CropBox(24, 0, 64, 64)
    three = eval_geometries(64, 112, 64, 3)
    assert [g.box.x for g in three] == [0, 24, 48]
    portrait = eval_geometries(112, 64, 64, 3)
    assert [g.box.y for g in portrait] == [0, 24, 48]
    out = apply_geometry(_frames(h=64, w=112), centre)
    assert out.shape == (4, 64, 64, 3)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("box", [CropBox(30, 10, 90, 100), CropBox(0, 0, 160, 120),
                                 CropBox(50, 40, 40, 30)])
def test_transform_points_agrees_with_the_pixels(box: CropBox, flip: bool) -> None:
    size = 56
    point = np.array([72.0, 55.0])  # inside every box above
    frames = np.zeros((1, 120, 160, 3), np.uint8)
    # A bright 3x3 dot centred on the point (big enough to survive antialiased shrinking).
    frames[0, 54:57, 71:74] = 255
    out = apply_geometry(frames, Geometry(box, size, flip)).numpy()[0, ..., 0].astype(float)
    ys, xs = np.mgrid[0:size, 0:size]
    weight = out / out.sum()
    centroid = np.array([(xs * weight).sum(), (ys * weight).sum()])
    mapped = transform_points(point, box, size, flip)
    assert np.abs(centroid - mapped).max() < 1.0, (centroid, mapped)
    mapped_t = transform_points(torch.tensor(point, dtype=torch.float32), box, size, flip)
    np.testing.assert_allclose(mapped_t.numpy(), mapped, atol=1e-4)


def test_transform_points_keeps_batch_shape() -> None:
    points = np.zeros((5, 7, 2))
    out = transform_points(points, CropBox(0, 0, 10, 10), (20, 40), False)
    assert out.shape == (5, 7, 2)
    np.testing.assert_allclose(out[0, 0], [(0.5 * 4) - 0.5, (0.5 * 2) - 0.5])


def test_normalize_round_trip() -> None:
    frames = _frames(t=3, h=8, w=8)
    clip = normalize(frames, IMAGENET_MEAN, IMAGENET_STD)
    assert clip.shape == (3, 3, 8, 8) and clip.dtype == torch.float32
    # Each channel is standardised with its own mean/std.
    expected_red = (frames[..., 0] / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    np.testing.assert_allclose(clip[0].numpy(), expected_red, atol=1e-5)
    back = denormalize(clip, IMAGENET_MEAN, IMAGENET_STD) * 255.0
    np.testing.assert_allclose(back.permute(1, 2, 3, 0).numpy(), frames, atol=1e-3)
    batch = denormalize(clip[None].repeat(2, 1, 1, 1, 1), IMAGENET_MEAN, IMAGENET_STD)
    assert batch.shape == (2, 3, 3, 8, 8)


def test_apply_geometry_rejects_boxes_outside() -> None:
    with pytest.raises(ValueError, match="outside"):
        apply_geometry(_frames(), Geometry(CropBox(100, 0, 100, 100), 32))
