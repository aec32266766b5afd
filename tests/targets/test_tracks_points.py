"""``targets.tracks.points: tracked`` (issue 21, more query points): the ``U x U`` sub-patch
centres tracked themselves instead of interpolated from the patch centres. Known answers: the
real tracker in the loader hook follows an object sliding over a still texture at the
sub-patch centres, leaving the patch-centre tracks as they were; on exact tracks an affine
motion field gives the interpolated target (the layouts agree), and an object edge inside a
patch gives each point its own motion where interpolation blurs it; visibility per token;
config rules naming the key; the run tracks in the workers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from motionmae.config import ConfigError, PretrainConfig, load_config
from motionmae.data.hooks import HookInput
from motionmae.data.lists import VideoEntry
from motionmae.data.transforms import CropBox, Geometry
from motionmae.motion import TracksHook
from motionmae.motion.protocol import patch_center_queries, patch_grid_queries
from motionmae.motion.synthetic import add_occluder, occluder_texture, translation_clip
from motionmae.targets import TracksTarget, TracksTargetConfig
from motionmae.targets.track_horizons import tubelet_windows
from motionmae.targets.track_points import tracked_point_motion
from motionmae.tokens import TokenGrid

SIZE, FRAMES, PATCH, SIDES = 112, 16, 16, 2
GRID = TokenGrid(frames=FRAMES, height=SIZE, width=SIZE)  # t=8, 7 x 7 patches
SIDE, START, SPEED = 48, (4, 32), 3  # the object: 48 px square, x0=4, y0=32, 3 px per frame
SUB = patch_grid_queries(SIZE, SIZE, PATCH, SIDES)[:, 1:]  # [196, 2] frame-0 (x, y)
CENTRES = patch_center_queries(SIZE, SIZE, PATCH)[:, 1:]  # [49, 2]


def _hook_output(sub_points: int | None) -> dict[str, torch.Tensor]:
    """A smooth random texture standing still, a square of another texture sliding right at
    SPEED px per frame over it, through the loader hook with the real tracker."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (256, 256, 3)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), 2.0).clip(0, 255).astype(np.uint8)
    scene = translation_clip(texture, FRAMES, (SIZE, SIZE), (0.0, 0.0))
    frames = add_occluder(scene, occluder_texture(texture, SIDE, rng), START, (SPEED, 0)).frames
    hook = TracksHook(PATCH, sub_points=sub_points)
    return hook(HookInput(frames=frames, entry=VideoEntry("object.mp4"),
                          frame_indices=np.arange(FRAMES),
                          geometry=Geometry(CropBox(0, 0, SIZE, SIZE), SIZE, False)))


@pytest.fixture(scope="module")
def tracked() -> dict[str, torch.Tensor]:
    return _hook_output(SIDES)


def _inside(points: np.ndarray, box, margin: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    return ((points[:, 0] >= x0 + margin) & (points[:, 0] <= x1 - margin)
            & (points[:, 1] >= y0 + margin) & (points[:, 1] <= y1 - margin))


def test_the_hook_tracks_the_sub_patch_centres_and_leaves_the_grid_as_it_was(tracked):
    sub, seen = tracked["subpatch_tracks"].numpy(), tracked["subpatch_visible"].numpy()
    assert sub.shape == (FRAMES, 49 * SIDES**2, 2) and seen.shape == (FRAMES, 49 * SIDES**2)
    np.testing.assert_allclose(sub[0], SUB, atol=1e-4)  # seeded at the sub-patch centres
    on_object = _inside(SUB, (START[0], START[1], START[0] + SIDE, START[1] + SIDE), 8)
    end = FRAMES - 1
    clear = ~_inside(SUB, (START[0] - 20, START[1] - 20, START[0] + SIDE + SPEED * end + 20,
                           START[1] + SIDE + 20), 0) & _inside(SUB, (0, 0, SIZE, SIZE), 8)
    assert on_object.sum() >= 9 and clear.sum() >= 10
    np.testing.assert_allclose(sub[end, on_object] - SUB[on_object],
                               [[SPEED * end, 0.0]] * int(on_object.sum()), atol=1.0)
    np.testing.assert_allclose(sub[:, clear] - SUB[clear], 0.0, atol=0.3)
    assert seen[:, on_object].all()
    # The grid's own tracks are the same where LK follows them; a lost point is carried by
    # its nearest tracked points, which now include sub-points.
    alone = _hook_output(None)
    assert set(alone) == {"tracks", "track_visible"}
    box = (START[0], START[1], START[0] + SIDE, START[1] + SIDE)
    sure = _inside(CENTRES, box, 8) | (~_inside(CENTRES, (box[0] - 20, box[1] - 20, box[2]
                                                          + SPEED * end + 20, box[3] + 20), 0)
                                       & _inside(CENTRES, (0, 0, SIZE, SIZE), 8))
    assert sure.sum() >= 5
    torch.testing.assert_close(tracked["tracks"][:, sure], alone["tracks"][:, sure],
                               atol=1e-4, rtol=0)


def _exact(points: np.ndarray, field) -> torch.Tensor:
    """``[1, T, P, 2]`` tracks of frame-0 ``points [P, 2]`` moved by ``field(points, frame)``."""
    return torch.tensor(np.stack([points + field(points, f) for f in range(FRAMES)]),
                        dtype=torch.float32)[None]


def _batch(field) -> dict[str, torch.Tensor]:
    return {"tracks": _exact(CENTRES, field),
            "track_visible": torch.ones(1, FRAMES, 49, dtype=torch.bool),
            "subpatch_tracks": _exact(SUB, field),
            "subpatch_visible": torch.ones(1, FRAMES, 49 * SIDES**2, dtype=torch.bool)}


def _targets(batch) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = dict(norm="none", upsample=SIDES)
    tracked, _ = TracksTarget(TracksTargetConfig(**cfg, points="tracked"), GRID)(batch)
    interpolated, _ = TracksTarget(TracksTargetConfig(**cfg), GRID)(batch)
    return tracked, interpolated


def test_an_affine_motion_field_gives_the_interpolated_target():
    """Bilinear interpolation (and its linear extrapolation at the border) is exact on an
    affine field, so the two targets agree token by token: the layouts match."""
    def affine(points, frame):
        x, y = points[:, 0:1], points[:, 1:2]
        return frame * np.concatenate([0.5 + 0.02 * x - 0.01 * y, -0.3 + 0.015 * y], 1)

    tracked, interpolated = _targets(_batch(affine))
    assert tracked.shape == (1, GRID.num_tokens, SIDES**2 * 2)
    torch.testing.assert_close(tracked, interpolated, atol=1e-4, rtol=0)
    assert tracked.abs().max() > 1.0


def test_an_object_edge_inside_a_patch_gives_each_point_its_own_motion():
    """A block of 3 x 3 patches plus half a patch moves SPEED px per frame, the rest stands
    still: every tracked point reads exactly its own motion; interpolation from the patch
    centres gives the points near the edge a blend."""
    box = (16, 16, 72, 72)  # x = 64..72 is the left half of patch column 4

    def block(points, frame):
        return np.where(_inside(points, box, 0)[:, None], [[SPEED * frame, 0.0]], 0.0)

    tracked, interpolated = _targets(_batch(block))
    moving = _inside(SUB, box, 0)  # [196]: per patch-major sub-point
    truth = torch.zeros(1, GRID.num_tokens, SIDES**2, 2)
    per_token = torch.tensor(moving.reshape(49, SIDES**2))
    for k, (start, end) in enumerate(zip(*tubelet_windows(FRAMES, 2), strict=True)):
        truth[0, k * 49:(k + 1) * 49][per_token] = torch.tensor([SPEED * (end - start), 0.0])
    torch.testing.assert_close(tracked, truth.flatten(2))
    assert (interpolated - truth.flatten(2)).abs().max() >= SPEED / 2


def test_a_token_weighs_0_when_one_of_its_points_is_hidden_at_its_window_ends():
    batch = _batch(lambda points, frame: np.zeros_like(points))
    starts, ends = tubelet_windows(FRAMES, 2)
    patch, point, frame = 10, 3, ends[2]  # the 4th point of patch 10, hidden in one frame
    batch["subpatch_visible"][0, frame, patch * SIDES**2 + point] = False
    _, weight = TracksTarget(TracksTargetConfig(points="tracked"), GRID)(batch)
    expected = torch.ones(1, GRID.num_tokens)
    reading = [k for k in range(GRID.t) if frame in (starts[k], ends[k])]
    assert reading == [2, 3]  # the frame ends tubelet 2's window and starts tubelet 3's
    for k in reading:
        expected[0, k * 49 + patch] = 0
    torch.testing.assert_close(weight, expected)


def test_missing_or_misshapen_sub_patch_tracks_are_named():
    windows = TracksTarget(TracksTargetConfig(points="tracked"), GRID)._window_index
    with pytest.raises(KeyError, match=r"subpatch_tracks.*tracking\.where: workers"):
        tracked_point_motion({"tracks": torch.zeros(1, FRAMES, 49, 2)}, GRID, 4, windows)
    batch = _batch(lambda points, frame: np.zeros_like(points))
    batch["subpatch_tracks"] = batch["subpatch_tracks"][:, :, :49]
    with pytest.raises(ValueError, match=r"expected \[B, 16, 196, 2\]"):
        tracked_point_motion(batch, GRID, 4, windows)


RUN = ["targets.names=[pixel,tracks]", "masking.kind=motion", "targets.tracks.points=tracked"]


@pytest.mark.parametrize(("override", "message"), [
    ("targets.tracks.upsample_mode=align_corners", r"targets\.tracks\.points: tracked points"),
    ("targets.tracks.horizons=[2]", r"targets\.tracks\.points: tracked points"),
    ("targets.tracks.queries=every_tubelet", r"targets\.tracks\.points: tracked points"),
    ("tracking.where=step", r"targets\.tracks\.points: .*tracking\.where: workers"),
    ("targets.tracks.points=dense", r"targets\.tracks\.points: must be one of"),
])
def test_settings_it_cannot_honour_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, overrides=[*RUN, override])


def test_the_run_tracks_the_points_in_the_workers():
    from motionmae.train.pretrain import build_sample_hooks

    cfg = load_config(PretrainConfig, overrides=[*RUN, "run.device=cpu"]).resolve(64)
    assert cfg.tracking.where == "workers"
    hooks = [h for h in build_sample_hooks(cfg, cfg.token_grid()) if isinstance(h, TracksHook)]
    assert [hook.sub_points for hook in hooks] == [2]
    default = load_config(PretrainConfig, overrides=RUN[:2]).resolve(64)
    assert [hook.sub_points for hook in build_sample_hooks(default, default.token_grid())
            if isinstance(hook, TracksHook)] == [None]
