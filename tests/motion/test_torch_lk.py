"""The batched PyTorch tracker (``torch_lk``) on known-motion clips built from a real frame,
against the OpenCV ``lk`` tracker whose algorithm and settings it shares.

Thresholds were measured on these exact clips (deterministic) and set with a margin of about
2x; the measured values are quoted next to each assertion.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionmae.config import ConfigError, PretrainConfig, load_config
from motionmae.environment import resolve_device
from motionmae.motion import (
    TRACKERS,
    LKConfig,
    TorchLKConfig,
    TorchLKTracker,
    TracksHook,
    grid_queries,
    make_tracker,
    track_lk,
    track_lk_batched,
)
from motionmae.motion.batched_tracker import _track
from motionmae.motion.metrics import delta_avg, occlusion_accuracy
from motionmae.motion.synthetic import (
    add_occluder,
    occluder_texture,
    random_motion_clip,
    translation_clip,
)

SIZE = 96
GRID = grid_queries(SIZE, SIZE, 6)  # 36 points, 16 px apart


def batched(frames: np.ndarray, queries: np.ndarray, config: LKConfig | None = None):
    """One clip through the batched function (B = 1), back as numpy."""
    tracks, visible = track_lk_batched(torch.from_numpy(frames)[None],
                                       torch.from_numpy(queries)[None], config)
    assert tracks.shape == (1, *frames.shape[:1], len(queries), 2)
    assert tracks.dtype == torch.float32 and visible.dtype == torch.bool
    return tracks[0].numpy(), visible[0].numpy()


@pytest.fixture(scope="module")
def clips(bunny):
    """Three different 8-frame clips (translation with an occluder, rotation, zoom)."""
    rng = np.random.default_rng(1)
    return [random_motion_clip(bunny, rng, kind, 8, (SIZE, SIZE), occluder)
            for kind, occluder in (("translation", True), ("rotation", False), ("zoom", True))]


@pytest.mark.parametrize("velocity", [(1.3, -0.7), (2.4, 1.1)])
def test_translation_of_real_texture_is_recovered(bunny_full, grass_origin, velocity):
    clip = translation_clip(bunny_full, 8, (SIZE, SIZE), velocity, origin=grass_origin)
    tracks, visible = batched(clip.frames, GRID)
    # known answer: the point queried at q is at q + t * velocity in frame t
    expected = GRID[None, :, 1:] + np.arange(8)[:, None, None] * np.array(velocity)
    _, gt_vis = clip.ground_truth(GRID)
    err = np.linalg.norm(tracks - expected, axis=-1)[visible & gt_vis]
    assert np.median(err) < 0.1  # measured 0.036 / 0.031 px
    assert np.percentile(err, 90) < 0.4  # measured 0.20 / 0.19 px
    assert np.mean(visible == gt_vis) > 0.95  # measured 0.983 / 0.997


def test_a_point_under_an_occluder_becomes_invisible(bunny):
    base = translation_clip(bunny, 8, (SIZE, SIZE), (1.0, 0.5))
    clip = add_occluder(base, occluder_texture(bunny, 32, np.random.default_rng(0)),
                        (-32, 30), (12, 0))
    gt, gt_vis = clip.ground_truth(GRID)
    occluded = clip.occluded(gt)
    assert occluded.sum() > 15  # the occluder does cover grid points (24 entries)
    tracks, visible = batched(clip.frames, GRID)
    assert np.mean(~visible[occluded]) > 0.8  # measured 0.96
    assert np.mean(visible[gt_vis]) > 0.9  # measured 0.98: the others stay visible
    acc = occlusion_accuracy(visible, gt_vis, GRID[:, 0])
    assert acc > np.mean(gt_vis[1:]) + 0.03  # measured 0.976 against 0.905 for "all visible"
    # lost points move on with their neighbours: positions stay right behind the occluder
    assert delta_avg(tracks, gt, gt_vis, (SIZE, SIZE), query_frames=GRID[:, 0]) > 0.95  # 0.99


def test_a_batch_equals_its_clips_tracked_alone(clips):
    frames = torch.from_numpy(np.stack([c.frames for c in clips]))
    queries = torch.from_numpy(np.stack([GRID] * 3))
    tracks, visible = track_lk_batched(frames, queries)
    assert tracks.shape == (3, 8, 36, 2) and visible.shape == (3, 8, 36)
    for i in range(3):
        alone, alone_visible = track_lk_batched(frames[i:i + 1], queries[i:i + 1])
        assert torch.equal(tracks[i], alone[0]) and torch.equal(visible[i], alone_visible[0])


def test_agrees_with_the_opencv_lk_tracker(clips):
    """Same algorithm, same settings: the same tracks up to OpenCV's fixed-point rounding."""
    for clip in clips:
        tracks, visible = batched(clip.frames, GRID)
        ref, ref_visible = track_lk(clip.frames, GRID)
        assert np.mean(visible == ref_visible) > 0.99  # measured 1.0 on each clip
        both = visible & ref_visible
        # measured 0.0005-0.0009 px
        assert np.median(np.linalg.norm(tracks - ref, axis=-1)[both]) < 0.01
        gt, gt_vis = clip.ground_truth(GRID)
        ours, theirs = (delta_avg(t, gt, gt_vis, (SIZE, SIZE), query_frames=GRID[:, 0])
                        for t in (tracks, ref))
        assert abs(ours - theirs) < 0.01  # measured 0.988 / 0.994 / 0.891 against 0.889


def test_queries_from_several_frames_go_both_ways(clips):
    clip = clips[1]
    q = np.concatenate([grid_queries(SIZE, SIZE, 4, t) for t in (0, 3, 7)])
    tracks, visible = batched(clip.frames, q)
    np.testing.assert_array_equal(tracks[q[:, 0].astype(int), np.arange(len(q))], q[:, 1:])
    assert visible[q[:, 0].astype(int), np.arange(len(q))].all()
    ref, ref_visible = track_lk(clip.frames, q)
    assert np.mean(visible == ref_visible) > 0.98  # measured 1.0
    assert np.median(np.linalg.norm(tracks - ref, axis=-1)) < 0.01  # measured 0.001


def test_a_sweep_no_query_needs_changes_nothing(clips):
    """Queries on an accelerator run both sweeps (no host sync to find which are needed):
    the answer is the one of the CPU path, which skips the backward sweep here."""
    frames = torch.from_numpy(np.stack([c.frames for c in clips]))
    queries = torch.from_numpy(np.stack([GRID] * 3))
    skipped = track_lk_batched(frames, queries)
    both = _track(frames, queries, LKConfig(), forward=True, backward=True)
    assert torch.equal(skipped[0], both[0]) and torch.equal(skipped[1], both[1])


def test_autocast_and_float_frames_give_the_same_tracks(clips):
    frames = torch.from_numpy(np.stack([c.frames for c in clips[:2]]))
    queries = torch.from_numpy(np.stack([GRID] * 2))
    tracks, visible = track_lk_batched(frames, queries)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, mixed_visible = track_lk_batched(frames.float(), queries.double())
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, tracks, atol=1e-4, rtol=0)
    assert torch.equal(mixed_visible, visible)


def _frames(b: int = 1, t: int = 4) -> torch.Tensor:
    return torch.zeros((b, t, 32, 32, 3), dtype=torch.uint8)


@pytest.mark.parametrize(
    ("frames", "queries", "message"),
    [
        (_frames().numpy(), torch.zeros(1, 1, 3), r"frames: expected a torch tensor"),
        (_frames()[0], torch.zeros(1, 1, 3), r"frames: expected shape \[B, T, H, W, 3\]"),
        (_frames()[..., :2], torch.zeros(1, 1, 3), r"got shape \(1, 4, 32, 32, 2\)"),
        (_frames().int(), torch.zeros(1, 1, 3), r"expected dtype uint8 or a float dtype"),
        (_frames(), torch.zeros(1, 3), r"queries: expected shape \[B, N, 3\]"),
        (_frames(), torch.zeros(2, 1, 3), r"B = 1 as frames, got shape \(2, 1, 3\)"),
        (_frames(), torch.zeros(1, 1, 3, dtype=torch.bool), "real"),
        (_frames(), torch.tensor([[[4.0, 1, 1]]]),
         r"clip 0: queries: row 0 has frame index t=4, expected an integer in \[0, 3\]"),
        (_frames(2), torch.tensor([[[0.0, 1, 1]], [[0, 40, 1]]]),
         r"clip 1: queries: row 0 point \(x=40, y=1\) is out of range"),
    ],
)
def test_bad_inputs_are_named(frames, queries, message):
    with pytest.raises(ValueError, match=message):
        track_lk_batched(frames, queries)


def test_settings_are_the_lk_trackers():
    assert TRACKERS.get("torch_lk").config is TorchLKConfig
    ours, theirs = TorchLKConfig(), LKConfig()
    assert {k: v for k, v in vars(ours).items() if k != "device"} == vars(theirs)
    with pytest.raises(ValueError, match=r"TorchLKConfig.reacquire: not supported"):
        TorchLKConfig(reacquire=True).validate()
    with pytest.raises(ValueError, match=r"LKConfig.reacquire: not supported"):
        track_lk_batched(_frames(), torch.zeros(1, 1, 3), LKConfig(reacquire=True))
    with pytest.raises(ValueError, match=r"TorchLKConfig.device: not a torch device: 'gpu'"):
        TorchLKConfig(device="gpu").validate()
    with pytest.raises(ValueError, match=r"LKConfig.window: must be an odd"):
        make_tracker("torch_lk", window=4)


def test_device_auto_is_the_gpu_when_there_is_one(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert TorchLKTracker().device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert TorchLKTracker().device == torch.device("cuda")
    assert TorchLKTracker(TorchLKConfig(device="cpu")).device == torch.device("cpu")


def test_selectable_by_config_and_a_point_tracker(clips):
    cfg = load_config(PretrainConfig, overrides=["tracking.tracker=torch_lk",
                                                 "tracking.torch_lk.window=15"])
    tracker = make_tracker(cfg.tracking.tracker, **cfg.tracking.tracker_settings())
    assert isinstance(tracker, TorchLKTracker) and tracker.config.window == 15
    frames = clips[1].frames.copy()
    frames.flags.writeable = False  # as loader workers hand them
    tracks, visible = tracker.track(frames, GRID)
    assert tracks.dtype == np.float32 and tracks.shape == (8, 36, 2) and visible.shape == (8, 36)
    expected = batched(clips[1].frames, GRID, TorchLKConfig(window=15))
    np.testing.assert_array_equal(tracks, expected[0])
    with pytest.raises(ConfigError, match=r"tracking.torch_lk: TorchLKConfig.reacquire"):
        load_config(PretrainConfig, overrides=["tracking.tracker=torch_lk",
                                               "tracking.torch_lk.reacquire=true"])


def test_tracks_hook_in_a_loader_worker(clips):
    """The hook builds the tracker in a forked worker and tracks there, on the CPU."""
    from motionmae.data.hooks import HookInput
    from motionmae.data.lists import VideoEntry

    hook = TracksHook(16, tracker="torch_lk")
    sample = HookInput(frames=clips[1].frames, entry=VideoEntry("clip.mp4"),
                       frame_indices=np.arange(8), geometry=None)
    loader = torch.utils.data.DataLoader([sample], batch_size=None, num_workers=1,
                                         collate_fn=hook)
    out = next(iter(loader))
    ref, ref_visible = track_lk(clips[1].frames, GRID)
    assert out["tracks"].shape == (8, 36, 2)
    assert torch.equal(out["track_visible"], torch.from_numpy(ref_visible))  # measured equal
    assert (out["tracks"] - torch.from_numpy(ref)).norm(dim=-1).median() < 0.01


def test_the_tracking_work_reads_no_tensor_value_on_the_host(clips, monkeypatch):
    """After the host-side checks, nothing waits for the device: no ``.item()``, ``.cpu()``,
    ``.tolist()``, ``.numpy()`` and no Python branch on a tensor's value (all would sync)."""
    frames = torch.from_numpy(clips[0].frames)[None]
    queries = torch.from_numpy(np.concatenate([grid_queries(SIZE, SIZE, 4, t)
                                               for t in (0, 5)]))[None]
    expected = track_lk_batched(frames, queries)

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host")

    for name in ("__bool__", "__int__", "__float__", "item", "tolist", "numpy", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    tracks, visible = _track(frames, queries, LKConfig(), forward=True, backward=True)
    monkeypatch.undo()
    assert torch.equal(tracks, expected[0]) and torch.equal(visible, expected[1])
