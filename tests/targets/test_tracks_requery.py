"""``targets.tracks.queries: every_tubelet`` (issue 21): points re-seeded at every tubelet's
window. Known answers on an object sliding over a still textured scene, through the real
tracker in the loader hook: the re-seeded target gives the object's motion at the object's
*current* place, where TrackMAE's frame-0 grid holds background points the object covers;
config rules naming the key; the run resolves tracking to the workers."""

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
from motionmae.motion.synthetic import add_occluder, occluder_texture, translation_clip
from motionmae.targets import TracksTarget, TracksTargetConfig
from motionmae.targets.track_horizons import requeried_motion, tubelet_windows
from motionmae.tokens import TokenGrid

SIZE, FRAMES, PATCH = 112, 16, 16
GRID = TokenGrid(frames=FRAMES, height=SIZE, width=SIZE)  # t=8, 7 x 7 patches
SIDE, START, SPEED = 48, (4, 32), 3  # the object: 48 px square, x0=4, y0=32, 3 px per frame


@pytest.fixture(scope="module")
def sample() -> dict[str, torch.Tensor]:
    """A smooth random texture standing still, a square of another texture sliding right at
    SPEED px per frame over it; the hook's output for it."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (256, 256, 3)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), 2.0).clip(0, 255).astype(np.uint8)
    scene = translation_clip(texture, FRAMES, (SIZE, SIZE), (0.0, 0.0))
    clip = add_occluder(scene, occluder_texture(texture, SIDE, rng), START, (SPEED, 0))
    frames = clip.frames
    frames.flags.writeable = False
    hook = TracksHook(PATCH, windows=tubelet_windows(FRAMES, 2))
    out = hook(HookInput(frames=frames, entry=VideoEntry("object.mp4"),
                         frame_indices=np.arange(FRAMES),
                         geometry=Geometry(CropBox(0, 0, SIZE, SIZE), SIZE, False)))
    return {key: value[None] for key, value in out.items()}


def _object_box(frame: int) -> tuple[float, float, float, float]:
    x0 = START[0] + SPEED * frame
    return x0, START[1], x0 + SIDE, START[1] + SIDE


def _centres() -> np.ndarray:
    """``[h*w, 2]`` (x, y) patch centres, token order."""
    ys, xs = np.meshgrid(np.arange(7) * PATCH + 7.5, np.arange(7) * PATCH + 7.5, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], 1)


def _inside(points: np.ndarray, box, margin: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    return ((points[:, 0] >= x0 + margin) & (points[:, 0] <= x1 - margin)
            & (points[:, 1] >= y0 + margin) & (points[:, 1] <= y1 - margin))


def test_the_hook_tracks_each_window_from_its_own_first_frame(sample):
    motion = sample["tubelet_motion"][0].numpy()  # [t, h*w, 2]
    seen = sample["tubelet_motion_visible"][0].numpy()
    assert motion.shape == (GRID.t, GRID.spatial, 2) and seen.dtype == bool
    starts, ends = tubelet_windows(FRAMES, 2)
    centres = _centres()
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        on_object = _inside(centres, _object_box(start), margin=8)
        # background far from the object over the whole window (its LK window included)
        x0, y0, x1, y1 = _object_box(start)
        clear = ~_inside(centres, (x0 - 20, y0 - 20, x1 + 2 * SPEED + 20, y1 + 20), margin=0)
        assert on_object.sum() >= 2 and clear.sum() >= 14
        np.testing.assert_allclose(motion[k, on_object], [[SPEED * (end - start), 0.0]] *
                                   int(on_object.sum()), atol=0.5)
        np.testing.assert_allclose(motion[k, clear], 0.0, atol=0.3)
        assert seen[k, on_object].all() and seen[k, clear].all()


def test_the_last_tubelet_reads_the_object_where_it_now_is(sample):
    """At the last tubelet the object covers patches whose frame-0 points were background:
    TrackMAE's grid says nothing of the object there (those points are hidden under it, so
    weight 0), the re-seeded grid gives its motion."""
    cfg = dict(norm="none", upsample=1)
    requeried, weight = TracksTarget(TracksTargetConfig(**cfg, queries="every_tubelet"),
                                     GRID)(sample)
    first, first_weight = TracksTarget(TracksTargetConfig(**cfg), GRID)(sample)
    last = GRID.t - 1
    start, end = tubelet_windows(FRAMES, 2)[0][last], tubelet_windows(FRAMES, 2)[1][last]
    now_on_object = _inside(_centres(), _object_box(start), margin=8)
    was_background = ~_inside(_centres(), _object_box(0), margin=-8)
    tokens = last * GRID.spatial + np.flatnonzero(now_on_object & was_background)
    assert len(tokens) >= 2
    expected = torch.tensor([SPEED * (end - start), 0.0]).expand(len(tokens), 2)
    torch.testing.assert_close(requeried[0, tokens], expected, atol=0.5, rtol=0)
    assert (weight[0, tokens] == 1).all()
    assert (first_weight[0, tokens] == 0).all() or (first[0, tokens].abs() < 0.5).all()


def test_requeried_motion_names_what_is_missing_or_misshapen(sample):
    with pytest.raises(KeyError, match=r"tubelet_motion.*tracking\.where: workers"):
        requeried_motion({"tracks": torch.zeros(1, FRAMES, 49, 2)}, GRID)
    bad = dict(sample, tubelet_motion=sample["tubelet_motion"][:, :4])
    with pytest.raises(ValueError, match=r"expected \[B, 8, 49, 2\]"):
        requeried_motion(bad, GRID)


def test_hook_refuses_windows_it_cannot_track():
    with pytest.raises(ValueError, match="frame_step 1"):
        TracksHook(PATCH, frame_step=2, windows=([0, 2], [2, 4]))
    with pytest.raises(ValueError, match="starts before ends"):
        TracksHook(PATCH, windows=([2], [2]))


RUN = ["targets.names=[pixel,tracks]", "masking.kind=motion", "data.frames=16",
       "targets.tracks.queries=every_tubelet"]


@pytest.mark.parametrize(("override", "message"), [
    ("targets.tracks.windows=official", r"targets\.tracks\.queries: every_tubelet needs"),
    ("targets.tracks.horizons=[2]", r"targets\.tracks\.queries: every_tubelet needs"),
    ("tracking.where=step", r"targets\.tracks\.queries: .*tracking\.where"),
    ("tracking.frame_step=2", r"targets\.tracks\.queries: .*frame_step: 1"),
])
def test_settings_it_cannot_honour_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, overrides=[*RUN, override])
    with pytest.raises(ConfigError, match=r"targets\.tracks\.queries: must be one of"):
        load_config(PretrainConfig, overrides=["targets.tracks.queries=sometimes"])


def test_the_run_tracks_in_the_workers_with_the_tubelet_windows(tmp_path):
    from motionmae.train.pretrain import build_sample_hooks

    cfg = load_config(PretrainConfig, overrides=[*RUN, "run.device=cpu"]).resolve(64)
    assert cfg.targets.tracks_per_tubelet and cfg.tracking.where == "workers"
    hooks = build_sample_hooks(cfg, cfg.token_grid())
    windows = tubelet_windows(16, 2)
    assert [hook.windows for hook in hooks if isinstance(hook, TracksHook)] == [
        (tuple(windows[0]), tuple(windows[1]))]
    default = load_config(PretrainConfig, overrides=RUN[:3]).resolve(64)
    assert not default.targets.tracks_per_tubelet
    assert [hook.windows for hook in build_sample_hooks(default, default.token_grid())
            if isinstance(hook, TracksHook)] == [None]
