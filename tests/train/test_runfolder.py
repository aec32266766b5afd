"""A run folder and the training commands (in-process, through ``cli.main``): a folder holding
a run is refused unless ``--resume`` or ``--overwrite``; ``--resume`` reads the run's
``config.yaml`` (flags change only what they name, not what the weights depend on) and also
starts a run that has no checkpoint yet, or none at all. Killed runs and a second process on a
busy folder: ``test_crash.py``; under ``torchrun``: ``test_distributed.py``."""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.cli import main
from motionmae.data import make_synthetic_dataset
from motionmae.errors import ENVIRONMENT, USAGE

SETTINGS = ["--frames", "4", "--size", "32", "--batch-size", "2", "--set", "model.depth=1",
            "--set", "model.decoder_depth=1", "--set", "data.workers=0", "--set",
            "data.stride=2", "--set", "run.log_every=1", "--set", "run.ckpt_every=2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("runfolder-videos")
    return make_synthetic_dataset(root, num_train=8, num_val=2, frames=8, size=32, seed=4)


def _pretrain(videos, out: Path, *flags: str) -> int:
    return main(["pretrain", "--data", str(videos.train_list), "--out", str(out), *flags])


def _losses(out: Path) -> dict[int, float]:
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), steps  # each step recorded once
    return {r["step"]: r["loss"] for r in records}


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    return lines[0]


@pytest.fixture(scope="module")
def finished(videos, tmp_path_factory):
    """A finished 4-step run (checkpoints at steps 2 and 4)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert _pretrain(videos, out, "--steps", "4", "--set", "run.keep_every=2", *SETTINGS) == 0
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def test_a_second_run_into_a_run_folder_is_refused_naming_resume_and_overwrite(
        videos, finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    before = {name: (run / name).read_text() for name in ("config.yaml", "metrics.jsonl")}
    capsys.readouterr()
    assert _pretrain(videos, run, "--steps", "2", *SETTINGS) == USAGE
    assert _error(capsys) == (
        f"motionmae pretrain: error: {run} already holds a run (config.yaml, metrics.jsonl, "
        "checkpoints): continue it with --resume, or delete it and start again with "
        "--overwrite")
    assert {name: (run / name).read_text() for name in before} == before
    assert latest_checkpoint(run / "checkpoints").step == 4


def test_overwrite_deletes_the_runs_files_and_keeps_the_users(videos, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    (run / "eval").mkdir()
    (run / "eval" / "knn.json").write_text("{}")  # a probe of the old run's checkpoint
    assert _pretrain(videos, run, "--overwrite", "--steps", "1", *SETTINGS) == 0
    assert sorted(_losses(run)) == [1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest",
                                                                      "step_00000001"]
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["steps"] == 1
    assert (run / "notes.txt").read_text() == "mine"
    assert not (run / "eval").exists()


def _crash_after_step_2(run: Path) -> None:
    """What a run killed between its checkpoint of step 2 and its end leaves behind."""
    shutil.rmtree(run / "checkpoints" / "step_00000004")
    (run / "checkpoints" / "latest").write_text("step_00000002\n")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")


def test_the_readme_resume_line_continues_with_the_runs_config(videos, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    _crash_after_step_2(run)
    # Only --data, --out and --resume: everything else comes from run/config.yaml.
    assert _pretrain(videos, run, "--resume") == 0
    assert _losses(run) == pytest.approx(_losses(finished), rel=1e-5, abs=1e-6)
    resumed, uninterrupted = (latest_checkpoint(r / "checkpoints").weights()
                              for r in (run, finished))
    for key, value in uninterrupted.items():
        assert resumed[key].allclose(value, rtol=1e-5, atol=1e-6), key


def test_a_longer_run_on_resume_says_what_the_lr_schedule_does(videos, finished, tmp_path,
                                                                caplog):
    run = _copy(finished, tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        assert _pretrain(videos, run, "--resume", "--steps", "6") == 0
    assert sorted(_losses(run)) == list(range(1, 7))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["run"]["steps"], saved["model"]["depth"], saved["data"]["size"]) == (6, 1, 32)
    assert ("the run is now 6 steps long (it was planned as 4): the warmup + cosine lr "
            "schedule is recomputed over 6 steps, so the lr of step 5 rises from 1.00e-06 to"
            in caplog.text)


@pytest.mark.parametrize(("flags", "key"), [
    (["--set", "model.depth=2"], "model.depth"),
    (["--targets", "pixel,hog"], "targets.names"),
    (["--frames", "8"], "data.frames"),
])
def test_resume_refuses_a_change_the_weights_depend_on_naming_the_key(
        videos, finished, tmp_path, capsys, flags, key):
    run = _copy(finished, tmp_path / "run")
    before = (run / "config.yaml").read_text()
    capsys.readouterr()
    assert _pretrain(videos, run, "--resume", "--steps", "6", *flags) == USAGE
    error = _error(capsys)
    assert error.startswith(f"motionmae pretrain: error: {key}: the run in {run} was trained "
                            "with "), error
    assert "--resume cannot change what the run's weights depend on" in error
    assert (run / "config.yaml").read_text() == before


def _error_after_the_bar(capsys) -> str:
    """The error line of a command that failed as training started, checked to be the only
    line: no progress bar before it (it appears at the first record), no traceback."""
    lines = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_resume_on_other_videos_is_refused_unless_asked_for_that_once(videos, finished,
                                                                        tmp_path, capsys,
                                                                        caplog):
    run = _copy(finished, tmp_path / "run")
    lines = videos.train_list.read_text().splitlines()
    fewer = tmp_path / "fewer.txt"  # the first five of the run's eight videos
    fewer.write_text("".join(f"{videos.train_list.parent / line}\n" for line in lines[:5]))
    moved = tmp_path / "moved"  # the same eight videos in another folder of the same name
    shutil.copytree(videos.train_list.parent, moved / videos.train_list.parent.name)
    capsys.readouterr()

    def resume(data: Path, steps: int, *flags: str) -> int:
        return main(["pretrain", "--data", str(data), "--out", str(run), "--resume",
                     "--steps", str(steps), *flags])

    with caplog.at_level(logging.INFO):
        assert resume(fewer, 6) == USAGE
    assert "resumed from" not in caplog.text  # refused before it says it resumed
    error = _error_after_the_bar(capsys)
    assert (f"--resume: {run} was trained on a list of 8 videos (fingerprint " in error
            and "this one has 5" in error and "run.resume_with_other_videos=true" in error)
    assert latest_checkpoint(run / "checkpoints").step == 4
    with caplog.at_level(logging.WARNING):
        assert resume(fewer, 6, "--set", "run.resume_with_other_videos=true") == 0
    assert "resuming on other videos" in caplog.text
    assert latest_checkpoint(run / "checkpoints").step == 6
    capsys.readouterr()
    # The permission was for that command: the run is now on the five, and the eight are
    # refused again, wherever the list is.
    assert resume(moved / videos.train_list.parent.name / videos.train_list.name, 8) == USAGE
    assert "trained on a list of 5 videos" in _error_after_the_bar(capsys)
    assert resume(fewer, 8) == 0


def test_a_dataset_moved_to_another_folder_resumes(videos, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    moved = tmp_path / "elsewhere" / videos.train_list.parent.name
    shutil.copytree(videos.train_list.parent, moved)
    assert main(["pretrain", "--data", str(moved / videos.train_list.name), "--out", str(run),
                 "--resume", "--steps", "6"]) == 0
    assert sorted(_losses(run)) == list(range(1, 7))


def test_resume_of_a_run_without_a_checkpoint_starts_at_step_0_with_its_config(
        videos, finished, tmp_path, caplog):
    """A job requeued before its first checkpoint: the same command, --resume, starts over
    with the run's config (not the defaults), and each step is recorded once."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(finished / "config.yaml", run)
    (run / "metrics.jsonl").write_text((finished / "metrics.jsonl").read_text().splitlines()[0]
                                       + "\n")  # logged before it was killed
    with caplog.at_level(logging.WARNING):
        assert _pretrain(videos, run, "--resume") == 0
    assert f"--resume: {run} has no checkpoint yet: starting at step 0 with its config.yaml" \
        in caplog.text
    assert _losses(run) == pytest.approx(_losses(finished), rel=1e-5, abs=1e-6)


def test_resume_into_an_empty_folder_starts_a_new_run(videos, tmp_path, caplog):
    run = tmp_path / "new"
    with caplog.at_level(logging.WARNING):
        assert _pretrain(videos, run, "--resume", "--steps", "1", *SETTINGS) == 0
    assert f"--resume: {run} holds no run yet: starting a new one" in caplog.text
    assert sorted(_losses(run)) == [1]


def test_finetune_refuses_a_run_folder_and_resumes_with_its_config(videos, tmp_path, capsys):
    out = tmp_path / "ft"
    start = ["finetune", "--scratch", "--train", str(videos.train_list), "--out", str(out)]
    tiny = ["--model", "tiny", "--batch-size", "2", "--set", "model.depth=1", "--set",
            "data.workers=0", "--set", "data.frames=4", "--set", "data.size=32",
            "--set", "run.log_every=1"]
    assert main([*start, "--steps", "1", *tiny]) == 0
    capsys.readouterr()
    assert main([*start, "--steps", "1", *tiny]) == USAGE
    assert "continue it with --resume, or delete it and start again with --overwrite" in \
        _error(capsys)
    assert main([*start, "--resume", "--steps", "2"]) == 0  # data.frames 4 from config.yaml
    assert sorted(_losses(out)) == [1, 2]
    assert latest_checkpoint(out / "checkpoints").config()["grid"]["frames"] == 4


def test_a_full_disk_at_config_yaml_is_one_line_and_leaves_no_run(videos, tmp_path, monkeypatch,
                                                                   capsys):
    from motionmae.train import runfolder

    def full(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runfolder, "atomic_write_bytes", full)
    out = tmp_path / "run"
    assert _pretrain(videos, out, "--steps", "1", *SETTINGS) == ENVIRONMENT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"motionmae pretrain: error: could not write {out / 'config.yaml'}: "
                       "No space left on device")
    assert not out.exists()  # nothing was written: the folder goes too
