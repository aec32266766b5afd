"""Errors a user can cause end as one line naming the file or key, and a telling exit status.

A corpus of broken files made here (truncated mp4, empty, random bytes, text renamed .mp4,
audio only, a missing path) goes through every command that takes a video or a list, in
process through ``cli.main``; one subprocess checks the real exit status and ``--debug``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motionmae.cli import main
from motionmae.data import make_synthetic_dataset
from motionmae.data.video import write_video
from motionmae.errors import DATA, USAGE

sys.path.insert(0, str(Path(__file__).parent / "data"))
from datatest_helpers import make_audio_only

BROKEN = ("truncated.mp4", "empty.mp4", "random.mp4", "text.mp4", "audio.mp4", "missing.mp4")
TINY = ["--set", "model.depth=1", "--set", "model.decoder_depth=1", "--set", "data.workers=0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("broken")
    good = folder / "good.mp4"
    write_video(good, np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), np.uint8))
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "empty.mp4").touch()
    (folder / "random.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    (folder / "text.mp4").write_text("id,caption\n1,a person waves\n" * 10)
    make_audio_only(folder / "audio.mp4")
    for name in BROKEN:  # a one-video list per broken file
        (folder / f"{name}.txt").write_text(f"{folder / name} 0\n")
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-errors")
    videos = make_synthetic_dataset(root / "videos", num_train=4, num_val=2, frames=8, size=32,
                                    seed=0)
    common = ["--steps", "1", "--batch-size", "2", *TINY]
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(root / "pre"),
                 "--frames", "4", "--size", "32", *common]) == 0
    assert main(["finetune", "--scratch", "--model", "tiny", "--train", str(videos.train_list),
                 "--out", str(root / "ft"), "--set", "data.frames=4", "--set", "data.size=32",
                 *common]) == 0
    return {"pretrain": root / "pre", "finetune": root / "ft"}


def _commands(video: Path, listing: Path, ckpt: dict[str, Path], out: Path) -> dict[str, list]:
    pre, ft = str(ckpt["pretrain"]), str(ckpt["finetune"])
    return {
        "tracks": ["tracks", str(video), "--out", str(out / "t.npz")],
        "visualize": ["visualize", "--checkpoint", pre, str(video), "--out", str(out / "v")],
        "pretrain": ["pretrain", "--data", str(listing), "--out", str(out / "p"), "--steps", "1",
                     "--batch-size", "1", "--frames", "4", "--size", "32", *TINY],
        "finetune": ["finetune", "--scratch", "--model", "tiny", "--train", str(listing),
                     "--out", str(out / "f"), "--steps", "1", "--batch-size", "1", *TINY],
        "features": ["features", "--checkpoint", pre, "--data", str(listing), "--out",
                     str(out / "f.npz"), "--workers", "0"],
        "probe": ["probe", "--checkpoint", pre, "--train", str(listing), "--val", str(listing),
                  "--workers", "0"],
        "evaluate": ["evaluate", "--checkpoint", ft, "--data", str(listing), "--out",
                     str(out / "e.json"), "--workers", "0"],
        "extract-tracks": ["extract-tracks", "--data", str(listing), "--cache", str(out / "c")],
        "prepare": ["prepare", "--data", str(listing), "--out", str(out / "prep"),
                    "--workers", "1"],
        "check-data": ["check-data", str(listing), "--out", str(out / "check"),
                       "--workers", "1"],
    }


def _assert_one_line(err: str, command: str, named: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if f"motionmae {command}: " in line]
    assert lines, err
    assert any(named in line for line in lines), err


@pytest.mark.parametrize("name", BROKEN)
def test_every_command_names_the_broken_file(corpus: Path, checkpoints: dict[str, Path],
                                             name: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    video, listing = corpus / name, corpus / f"{name}.txt"
    for command, argv in _commands(video, listing, checkpoints, tmp_path).items():
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        assert code == DATA, (command, code, err)
        if command in ("extract-tracks", "prepare", "check-data"):  # a report, per video
            assert "Traceback" not in err and str(video) in err, (command, err)
        else:
            _assert_one_line(err, command, str(video))


def test_inputs_that_are_not_there(checkpoints: dict[str, Path], corpus: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    good = corpus / "good.mp4"
    cases = [
        (["features", "--checkpoint", str(tmp_path / "no-run"), "--data", str(corpus /
          "empty.mp4.txt"), "--out", str(tmp_path / "f.npz")], DATA, "no-run"),
        (["pretrain", "--data", str(tmp_path / "no-list.txt"), "--out", str(tmp_path / "p"),
          "--steps", "1"], DATA, "no-list.txt"),
        (["tracks", str(good), "--out", str(tmp_path / "t.npz"), "--tracker", "cotracker",
          "--checkpoint", str(tmp_path / "no-cotracker.pth")], DATA, "no-cotracker.pth"),
        (["extract-teacher", "--data", str(corpus / "empty.mp4.txt"), "--cache",
          str(tmp_path / "c"), "--teacher", str(tmp_path / "no-teacher")], USAGE,
         "targets.teacher.path"),
        (["pretrain", "--data", str(corpus / "empty.mp4.txt"), "--out", str(tmp_path / "p"),
          "--set", "data.max_bad_fraction=2"], USAGE, "data.max_bad_fraction"),
        (["tracks", str(good), "--out", str(tmp_path / "t.npz"), "--start", "99"], USAGE,
         "--start 99"),
        (["probe", "--kind", "linear,svm"], USAGE, "--kind"),
    ]
    for argv, expected, named in cases:
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        assert code == expected, (argv, code, err)
        _assert_one_line(err, argv[0], named)
        assert len([x for x in err.splitlines() if x.startswith("motionmae ")]) == 1, err


def test_real_exit_status_and_debug_traceback(corpus: Path, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "motionmae", "tracks", str(corpus / "text.mp4"), "--out",
            str(tmp_path / "t.npz")]
    env = {**os.environ, "MOTIONMAE_DEBUG": "0"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == DATA
    assert done.stderr.strip() == (f"motionmae tracks: error: {corpus / 'text.mp4'}: cannot be "
                                   "opened as media: Invalid data found when processing input "
                                   "(not a video file, or truncated or damaged)")
    env["MOTIONMAE_DEBUG"] = "1"
    debug = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "VideoReadError" in debug.stderr


def test_one_frame_video_tracks_are_the_queries(tmp_path: Path) -> None:
    video = tmp_path / "one.mp4"
    write_video(video, np.full((1, 32, 48, 3), 90, np.uint8))
    queries = np.array([[0, 3.0, 4.0], [0, 40.5, 20.0]], np.float32)
    np.save(tmp_path / "q.npy", queries)
    assert main(["tracks", str(video), "--out", str(tmp_path / "t.npz"), "--queries",
                 str(tmp_path / "q.npy")]) == 0
    with np.load(tmp_path / "t.npz") as data:
        np.testing.assert_array_equal(data["tracks"], queries[None, :, 1:])
        assert data["visible"].tolist() == [[True, True]]
