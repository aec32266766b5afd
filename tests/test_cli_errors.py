"""Errors a user can cause end as one line naming the file or key, and a telling exit status.

A corpus of broken files made here (truncated mp4, empty, random bytes, text renamed .mp4,
audio only, a missing path) goes through every command that takes a video or a list, in
process through ``cli.main``; one subprocess checks the real exit status and ``--debug``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from motionmae.cli import main
from motionmae.data import make_synthetic_dataset
from motionmae.data.video_writer import write_video
from motionmae.errors import DATA, ENVIRONMENT, USAGE

sys.path.insert(0, str(Path(__file__).parent / "data"))
sys.path.insert(0, str(Path(__file__).parent / "targets"))
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
    return {"pretrain": root / "pre", "finetune": root / "ft", "list": videos.train_list}


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
        (["features", "--checkpoint", str(checkpoints["pretrain"]), "--data",
          str(corpus / "empty.mp4.txt"), "--out", str(tmp_path / "f.npz"), "--device", "gpu"],
         USAGE, "not a torch device: 'gpu'"),
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
    # The traceback, and the same status: a script tells errors apart with --debug too.
    assert debug.returncode == DATA and "Traceback (most recent call last)" in debug.stderr
    assert "VideoReadError" in debug.stderr
    assert debug.stderr.rstrip().endswith(done.stderr.strip())


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


def _one_line(err: str, command: str) -> str:
    """The one error line of ``err`` (progress bars aside), with no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("motionmae ")]
    assert len(lines) == 1 and lines[0].startswith(f"motionmae {command}: error: "), err
    return lines[0]


def test_an_output_path_that_is_a_file(checkpoints: dict[str, Path], corpus: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    listing = corpus / "good.txt"
    listing.write_text(f"{corpus / 'good.mp4'} 0\n")
    cases = {
        "check-data": ["check-data", str(listing), "--out", str(blocker), "--workers", "1"],
        "features": ["features", "--checkpoint", str(checkpoints["pretrain"]), "--data",
                     str(listing), "--out", str(blocker), "--windows", "4", "--workers", "0"],
        "tracks": ["tracks", str(corpus / "good.mp4"), "--out", str(blocker / "t.npz")],
    }
    for command, argv in cases.items():
        capsys.readouterr()
        assert main(argv) == ENVIRONMENT, command
        assert _one_line(capsys.readouterr().err, command).endswith(
            f"error: {blocker} is a file, not a folder: choose another output path"), command


class _Exploit:
    """Unpickling it would print: enough to tell that a file needs code to load."""

    def __reduce__(self):
        return (print, ("unpickled",))


def test_refused_unsafe_files_are_one_line(checkpoints: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    from teacher_folders import write_teacher

    from motionmae.checkpoints.format import MANIFEST, STATE, latest_checkpoint
    from motionmae.fileio import sha256_file

    listing = checkpoints["pretrain"].parent / "videos" / "train.txt"
    common = ["--data", str(listing), "--frames", "4", "--size", "32", "--steps", "2",
              "--batch-size", "2", *TINY]
    # --resume: a checkpoint whose state.pt holds a Python object (manifest consistent).
    run = tmp_path / "run"
    shutil.copytree(checkpoints["pretrain"], run)
    state = latest_checkpoint(run / "checkpoints").path / STATE
    torch.save({"train_state": {"step": 1}, "payload": _Exploit()}, state)
    manifest = json.loads((state.parent / MANIFEST).read_text())
    manifest["files"][STATE] = {"size": state.stat().st_size, "sha256": sha256_file(state)}
    (state.parent / MANIFEST).write_text(json.dumps(manifest))
    # --config: a YAML tag asking for a Python object.
    config = tmp_path / "run.yaml"
    config.write_text("run:\n  seed: !!python/object/apply:os.system ['true']\n")
    # The teacher: its weights as a pickle holding a Python object.
    teacher = write_teacher(tmp_path / "teacher", "dinov2")
    weights = load_file(str(teacher / "model.safetensors"))
    (teacher / "model.safetensors").unlink()
    torch.save({**weights, "payload": _Exploit()}, teacher / "pytorch_model.bin")
    cases = [
        (["--out", str(run), "--resume"], DATA, f"error: {state}: refused to load: the file "
         "holds Python objects that only arbitrary code could rebuild (Unsupported global: "
         "GLOBAL print was not an allowed global by default), and it is read with "
         "torch.load(weights_only=True)"),
        (["--out", str(tmp_path / "c"), "--config", str(config)], USAGE,
         f"error: config file {config} (line 2, column 9): refused: could not determine a "
         "constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
        (["--out", str(tmp_path / "t"), "--targets", "teacher", "--set",
          f"targets.teacher.path={teacher}"], DATA,
         f"error: {teacher / 'pytorch_model.bin'}: refused to load"),
    ]
    for flags, code, expected in cases:
        capsys.readouterr()
        assert main(["pretrain", *common, *flags]) == code, flags
        line = _one_line(capsys.readouterr().err, "pretrain")
        assert expected in line, (line, expected)
    capsys.readouterr()
    assert "unpickled" not in capsys.readouterr().out


def test_export_into_an_existing_export_names_the_flag(
        checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["export", "--checkpoint", str(checkpoints["pretrain"]), "--out", str(tmp_path / "e")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == USAGE
    assert _one_line(capsys.readouterr().err, "export") == (
        f"motionmae export: error: {tmp_path / 'e'} already holds an export (model.safetensors, "
        "config.json, README.md): choose another folder, or replace it with --overwrite "
        "(overwrite=True in Python)")
    assert main([*argv, "--overwrite"]) == 0


def test_a_batch_the_list_cannot_fill_fails_before_any_work(
        checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    listing = checkpoints["pretrain"].parent / "videos" / "train.txt"  # 4 videos
    for command, flags in (("pretrain", ["--data", str(listing), "--frames", "4"]),
                           ("finetune", ["--scratch", "--model", "tiny", "--train",
                                         str(listing)])):
        out = tmp_path / command
        capsys.readouterr()
        assert main([command, *flags, "--out", str(out), "--steps", "1", "--batch-size", "8",
                     *TINY]) == USAGE
        assert _one_line(capsys.readouterr().err, command).endswith(
            f"error: {listing} has 4 video(s), too few for one step of 8 video(s): lower "
            "--batch-size (run.batch_size 8) or add videos")
        assert not out.exists()  # nothing built, nothing written


def test_batch_size_not_a_multiple_of_num_sample_is_a_config_error(
        checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from motionmae.config import ConfigError, PretrainConfig, load_config

    with pytest.raises(ConfigError, match=r"run\.batch_size: 3 clips is not a multiple of "
                                          r"data\.num_sample 2"):
        load_config(PretrainConfig, overrides=["run.batch_size=3", "data.num_sample=2"])
    listing = checkpoints["pretrain"].parent / "videos" / "train.txt"
    assert main(["pretrain", "--data", str(listing), "--out", str(tmp_path / "p"),
                 "--batch-size", "3", "--set", "data.num_sample=2", *TINY]) == USAGE
    assert "run.batch_size: 3 clips is not a multiple of data.num_sample 2" in _one_line(
        capsys.readouterr().err, "pretrain")
    assert not (tmp_path / "p").exists()


def test_debug_and_verbose_after_the_command(corpus: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    from motionmae.data.video_info import VideoReadError

    argv = ["tracks", str(corpus / "text.mp4"), "--out", str(tmp_path / "t.npz")]
    assert main(argv) == DATA
    capsys.readouterr()
    for debug_argv in ([*argv, "--debug"], [*argv, "-v", "--debug"], ["--debug", *argv]):
        assert main(debug_argv) == DATA  # the traceback is shown; the status stays
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and VideoReadError.__name__ in err
    assert main([*argv, "--verbose"]) == DATA  # --verbose alone changes nothing else


def test_config_file_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("run:\n  seed: [1, 2\n")
    assert main(["pretrain", "--data", str(tmp_path / "x.txt"), "--out", str(tmp_path / "p"),
                 "--config", str(config)]) == USAGE
    assert _one_line(capsys.readouterr().err, "pretrain") == (
        f"motionmae pretrain: error: config file {config}: not valid YAML (line 3, column 1): "
        "expected ',' or ']', but got '<stream end>'")


def test_python_warnings_reach_the_user_as_one_log_line(monkeypatch, capsys, caplog) -> None:
    import logging
    import warnings

    import motionmae.cli.data as cli_data

    # Earlier main() calls in this process left logging capturing (its switch is global):
    # reset it, as a fresh process starts; the test's warning functions are restored after.
    logging.captureWarnings(False)
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)

    def warns(args) -> int:
        warnings.warn("too few RANSAC inliers", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli_data, "cmd_check_data", warns)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            assert main(["check-data", "x.txt", "--out", "y"]) == 0
    finally:
        logging.captureWarnings(False)
    said = [r.getMessage() for r in caplog.records if "RANSAC" in r.getMessage()]
    assert said == ["UserWarning: too few RANSAC inliers"]  # no path, no source line
    assert "RANSAC" not in capsys.readouterr().err  # not printed by Python besides
