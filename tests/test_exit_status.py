"""The exit statuses the command gives are the named ones of ``motionmae.errors``."""

from __future__ import annotations

import signal

import pytest

from motionmae import errors
from motionmae.cli import finetune as finetune_cli
from motionmae.cli import main
from motionmae.cli import pretrain as pretrain_cli
from motionmae.cli.common import Stopped


def test_preempted_is_128_plus_sigterm_and_interrupted_128_plus_sigint():
    assert errors.PREEMPTED == 128 + signal.SIGTERM == 143
    assert errors.INTERRUPTED == 128 + signal.SIGINT == 130


@pytest.mark.parametrize("status", [errors.PREEMPTED, errors.INTERRUPTED])
@pytest.mark.parametrize("module, command", [
    (pretrain_cli, ["pretrain", "--out", "run"]),
    (finetune_cli, ["finetune", "--scratch", "--model", "tiny", "--out", "run"]),
])
def test_a_stopped_training_command_exits_with_its_signal_status(module, command, status,
                                                                  tmp_path, monkeypatch):
    """A run stopped by SIGTERM or Ctrl-C (``run_training`` returns ``Stopped`` once its
    checkpoint is saved) exits with 128 + the signal's number."""
    videos = tmp_path / "train.txt"
    videos.write_text("a.mp4 0\n")
    flag = "--data" if command[0] == "pretrain" else "--train"
    monkeypatch.setattr(module, "run_training", lambda *args, **kwargs: Stopped(status))
    monkeypatch.chdir(tmp_path)
    assert main([*command, flag, str(videos)]) == status
